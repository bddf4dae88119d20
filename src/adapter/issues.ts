import { AdapterError, ConfigError, formatMessage, issuesMessage, type AdapterCode, type ConfigCode, type ErrorFacts, type Issue } from '../errors.js';

/**
 * Validation collects every problem first, then throws once (zod style): one error whose `code` is the
 * first issue's, whose message lists every issue on its own "✖ … → at …" line, and whose `issues` holds them all.
 */
type Codes = { config: ConfigCode; adapter: AdapterCode };

/** Issues kept (and formatted) per error; the rest are counted: a hostile file with a million bad tensors costs a count. */
export const MAX_ISSUES = 1000;

export class IssueList {
  readonly items: Issue[] = [];
  /** Issues beyond MAX_ISSUES, counted only. */
  #more = 0;

  constructor(readonly title: string) {}

  add(code: ConfigCode | AdapterCode, problem: string, facts: ErrorFacts = {}): void {
    if (this.items.length >= MAX_ISSUES) this.#more++;
    else this.items.push({ ...facts, code, message: formatMessage(problem, facts) });
  }

  get length(): number {
    return this.items.length + this.#more;
  }

  /** Throws one error for everything collected (ConfigError when the first issue has a config code). */
  throwIfAny(kind: keyof Codes): void {
    if (!this.items.length) return;
    const first = this.items[0]!;
    const one = this.items.length === 1;
    const problem = one ? first.message : issuesMessage(this.title, this.items) + (this.#more ? `\n  … and ${this.#more} more issues (the first ${MAX_ISSUES} are listed)` : '');
    // Keep the first issue's facts on the error so callers can branch on them without reading `issues`.
    const keep = { file: first.file, tensor: first.tensor, key: first.key, module: first.module, expected: first.expected, got: first.got };
    const Err = kind === 'config' ? ConfigError : AdapterError;
    const err = new Err(first.code as never, problem, {}, this.items);
    Object.assign(err, keep);
    throw err;
  }
}
