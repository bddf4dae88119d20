import { AdapterError, ConfigError, formatMessage, issuesMessage, type AdapterCode, type ConfigCode, type ErrorFacts, type Issue } from '../errors.js';

/**
 * Validation collects every problem first, then throws once (zod style): one error whose `code` is the
 * first issue's, whose message lists every issue on its own "✖ … → at …" line, and whose `issues` holds them all.
 */
type Codes = { config: ConfigCode; adapter: AdapterCode };

export class IssueList {
  readonly items: Issue[] = [];

  constructor(readonly title: string) {}

  add(code: ConfigCode | AdapterCode, problem: string, facts: ErrorFacts = {}): void {
    this.items.push({ ...facts, code, message: formatMessage(problem, facts) });
  }

  get length(): number {
    return this.items.length;
  }

  /** Throws one error for everything collected (ConfigError when the first issue has a config code). */
  throwIfAny(kind: keyof Codes): void {
    if (!this.items.length) return;
    const first = this.items[0]!;
    const one = this.items.length === 1;
    const problem = one ? first.message : issuesMessage(this.title, this.items);
    // Keep the first issue's facts on the error so callers can branch on them without reading `issues`.
    const keep = { file: first.file, tensor: first.tensor, key: first.key, module: first.module, expected: first.expected, got: first.got };
    const Err = kind === 'config' ? ConfigError : AdapterError;
    const err = new Err(first.code as never, problem, {}, this.items);
    Object.assign(err, keep);
    throw err;
  }
}
