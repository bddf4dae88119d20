import { ConfigError } from '../errors.js';
import { DEFAULT_LIMITS, type LoadLimits } from '../limits.js';
import type { PeftConfig } from './config.js';
import { PyRegex, PyRegexBudgetError, PyRegexError, type PyBudget } from './pyre.js';

/**
 * PEFT's per-module rank, alpha and scale, and its target-module rule, evaluated the way PEFT evaluates them.
 * Sources: huggingface/peft `tuners/lora/model.py` (`_create_and_replace`), `tuners/lora/layer.py` (`update_layer`:
 * scaling = α/r, or α/√r with rsLoRA), `utils/other.py` (`get_pattern_key`: the first key K, in dict order, with
 * `re.match(rf"(.*\.)?({K})$", name)`), `tuners/tuners_utils.py` (`check_target_module_exists`).
 *
 * All patterns are Python `re` patterns, compiled once per load by {@link PeftMatcher} (no module-level cache) and
 * run on the linear-time matcher in `pyre.ts` under one step budget. Keys that are plain names (no regex syntax
 * besides `.`) never reach the regex engine: they are looked up by the module's dotted suffixes in a hash table,
 * which is what makes 10,000 keys × 1,500 modules cheap; the remaining regex keys are tried in order, behind a
 * literal-suffix test, only while they could still come before the best literal match.
 */

/**
 * Limits on what a config may ask the matcher to do. Stricter than PEFT (which has none); documented in
 * docs/limits.md. `keys` is the default of `LoadLimits.maxPatternKeys`, which a load may override.
 */
export const PATTERN_LIMITS = {
  /** Keys of `rank_pattern` and `alpha_pattern` together (default of `LoadLimits.maxPatternKeys`). */
  keys: DEFAULT_LIMITS.maxPatternKeys,
  /** Entries that need the regex engine (anything but plain names), summed over every pattern field. */
  regexKeys: 256,
  /** Distinct shapes (length and dot positions) of plain keys: each shape is one hash lookup per module. */
  shapes: 1024,
  /** Regex VM steps one load may spend (about 0.2–0.5 s of matching). */
  steps: 20_000_000,
};

/** One problem with a pattern in the config, for the caller to turn into a ConfigError issue. */
export interface PatternProblem {
  code: 'bad_regex' | 'too_many_patterns' | 'regex_budget';
  problem: string;
  /** Config key, e.g. `rank_pattern.q_proj|k_proj` or `target_modules`. */
  key: string;
  got: unknown;
  detail?: string;
}

/** Thrown while matching: the budget ran out or a lazily compiled pattern turned out bad. */
export class PatternError extends Error {
  constructor(readonly info: PatternProblem) {
    super(info.problem);
  }
}

/** A key made only of characters that are literal in Python `re`, except `.` (which matches any character). */
const PLAIN_DOTTED = /^[^\\^$*+?{}[\]|()\n\uD800-\uDFFF]*$/;
/** A name with no regex syntax at all. */
const PLAIN = /^[^\\^$*+?{}[\]|().\n\uD800-\uDFFF]+$/;
/** Paths the hash lookups cannot answer exactly (`.` and `$` treat newlines specially; astral characters are one `.`). */
const AWKWARD_PATH = /[\n\uD800-\uDFFF]/;

/** The module path and every part after a dot: `a.b.c` → `a.b.c`, `b.c`, `c`. */
function dottedSuffixes(path: string): string[] {
  const out = [path];
  for (let i = path.indexOf('.'); i >= 0; i = path.indexOf('.', i + 1)) out.push(path.slice(i + 1));
  return out;
}

/**
 * A literal trailing name every match of key K must end with, for a cheap `endsWith` test before the regex:
 * the final run of word characters, kept only when what precedes it cannot change its meaning.
 */
function requiredSuffix(k: string): string | undefined {
  if (k.includes('|') || k.includes('(?')) return undefined;
  const m = /[A-Za-z0-9_]+$/.exec(k);
  if (!m) return undefined;
  const before = k[m.index - 1];
  if (before !== undefined && before !== ')' && before !== ']' && before !== '.') return undefined;
  return m[0];
}

interface Compiled {
  re: PyRegex;
  key: string;
}

/**
 * The first key of a `rank_pattern` / `alpha_pattern` dict that matches a module, as `get_pattern_key` finds it.
 */
export class PatternTable {
  private readonly keys: string[];
  /** Plain-dotted keys: length → groups of keys sharing their dot positions → key text → first index. */
  private readonly byLen = new Map<number, Map<string, { dots: number[]; first: Map<string, number> }>>();
  /** Distinct plain-key shapes. */
  shapes = 0;
  private readonly regexes: { idx: number; re: PyRegex; suffix?: string }[] = [];
  private readonly lazy = new Map<number, PyRegex>();

  constructor(
    private readonly field: string,
    pattern: Readonly<Record<string, unknown>>,
    problems: PatternProblem[],
  ) {
    this.keys = Object.keys(pattern);
    this.keys.forEach((k, idx) => {
      if (PLAIN_DOTTED.test(k)) {
        const dots: number[] = [];
        for (let i = k.indexOf('.'); i >= 0; i = k.indexOf('.', i + 1)) dots.push(i);
        let groups = this.byLen.get(k.length);
        if (!groups) this.byLen.set(k.length, (groups = new Map()));
        const sig = dots.join(',');
        let g = groups.get(sig);
        if (!g) {
          groups.set(sig, (g = { dots, first: new Map() }));
          this.shapes++;
        }
        if (!g.first.has(k)) g.first.set(k, idx);
        return;
      }
      const c = compileOrReport(`(.*\\.)?(${k})$`, `${field}.${k}`, k, problems);
      if (c) this.regexes.push({ idx, re: c.re, suffix: requiredSuffix(k) });
    });
  }

  get size(): number {
    return this.keys.length;
  }
  get regexCount(): number {
    return this.regexes.length;
  }

  /** The first matching key, or undefined. */
  find(path: string, budget: PyBudget): string | undefined {
    let best = Infinity;
    if (!AWKWARD_PATH.test(path)) {
      for (const s of dottedSuffixes(path)) {
        const groups = this.byLen.get(s.length);
        if (!groups) continue;
        for (const g of groups.values()) {
          let masked = s;
          if (g.dots.length) {
            const chars = s.split('');
            for (const d of g.dots) chars[d] = '.';
            masked = chars.join('');
          }
          const idx = g.first.get(masked);
          if (idx !== undefined && idx < best) best = idx;
        }
      }
    } else {
      // Rare and hostile: run the plain keys through the regex engine too, in order.
      for (let idx = 0; idx < this.keys.length && idx < best; idx++) {
        const k = this.keys[idx]!;
        if (!PLAIN_DOTTED.test(k)) continue;
        let re = this.lazy.get(idx);
        if (!re) this.lazy.set(idx, (re = PyRegex.compile(`(.*\\.)?(${k})$`)));
        if (run(re, path, budget, `${this.field}.${k}`, false)) best = idx;
      }
    }
    for (const r of this.regexes) {
      if (r.idx >= best) break;
      if (r.suffix && !path.endsWith(r.suffix) && !path.endsWith(`${r.suffix}\n`)) continue;
      if (run(r.re, path, budget, `${this.field}.${this.keys[r.idx]}`, false)) {
        best = r.idx;
        break;
      }
    }
    return best === Infinity ? undefined : this.keys[best];
  }
}

function compileOrReport(source: string, key: string, got: unknown, problems: PatternProblem[]): Compiled | undefined {
  try {
    return { re: PyRegex.compile(source), key };
  } catch (e) {
    if (!(e instanceof PyRegexError)) throw e;
    problems.push({ code: 'bad_regex', problem: 'not a Python regular expression PEFT can use', key, got, detail: `${e.problem}: ${e.construct}` });
    return undefined;
  }
}

function run(re: PyRegex, text: string, budget: PyBudget, key: string, full: boolean): boolean {
  try {
    return full ? re.fullmatch(text, budget) : re.match(text, budget);
  } catch (e) {
    if (!(e instanceof PyRegexBudgetError)) throw e;
    throw new PatternError({
      code: 'regex_budget',
      problem: `matching module names against the config's patterns took more than ${PATTERN_LIMITS.steps.toLocaleString('en-US')} steps`,
      key,
      got: re.source.length > 80 ? `${re.source.slice(0, 77)}…` : re.source,
    });
  }
}

type TargetFields = Pick<PeftConfig, 'target_modules' | 'exclude_modules' | 'layers_to_transform' | 'layers_pattern' | 'modules_to_save'> & {
  task_type?: string | null;
  rank_pattern?: Readonly<Record<string, unknown>>;
  alpha_pattern?: Readonly<Record<string, unknown>>;
};

/** Why a module with LoRA tensors is left alone, as PEFT's `check_target_module_exists` decides. */
export type NotTargeted = 'exclude_modules' | 'modules_to_save' | 'target_modules' | 'layers_to_transform';

/** Heads PEFT adds to `modules_to_save` itself, per task type (`PeftModelForSequenceClassification.__init__`, …). */
export const TASK_HEADS: Readonly<Record<string, readonly string[]>> = {
  SEQ_CLS: ['classifier', 'score'],
  TOKEN_CLS: ['classifier', 'score'],
  QUESTION_ANS: ['qa_outputs'],
};

/**
 * `modules_to_save` as PEFT uses it at load: the config's list plus the task head (`classifier`/`score` for
 * SEQ_CLS and TOKEN_CLS, `qa_outputs` for QUESTION_ANS), so an adapter saved with `modules_to_save: null` still
 * carries its trained head. `targeting`: the list PEFT consults when choosing LoRA targets, which has the head only
 * for SEQ_CLS (the other two task classes extend the list after injecting the adapter).
 */
export function effectiveModulesToSave(config: Pick<TargetFields, 'modules_to_save' | 'task_type'>, targeting = false): string[] | null {
  const heads = config.task_type ? TASK_HEADS[config.task_type] : undefined;
  const use = heads && (!targeting || config.task_type === 'SEQ_CLS') ? heads : [];
  if (!config.modules_to_save && !use.length) return config.modules_to_save ?? null;
  return [...(config.modules_to_save ?? []), ...use];
}

/**
 * Every pattern in a config, compiled once (one instance per load). Construction never throws: problems are
 * collected in `problems` (bad regexes, too many keys); matching throws {@link PatternError} when the step budget
 * runs out.
 */
export class PeftMatcher {
  readonly problems: PatternProblem[] = [];
  readonly budget: PyBudget = { steps: PATTERN_LIMITS.steps };
  readonly rank: PatternTable;
  readonly alpha: PatternTable;
  private readonly target?: { kind: 'regex'; re?: PyRegex } | { kind: 'list'; set: Set<string> } | { kind: 'unknown' };
  private readonly exclude?: { kind: 'regex'; re?: PyRegex } | { kind: 'list'; set: Set<string> };
  private readonly saved: ({ plain: string } | { re: PyRegex; key: string })[] = [];
  private readonly layerRes: Compiled[] = [];
  private readonly layers: number | readonly number[] | null;

  constructor(
    private readonly config: TargetFields,
    limits?: Partial<Pick<LoadLimits, 'maxPatternKeys'>>,
  ) {
    const problems = this.problems;
    const maxKeys = limits?.maxPatternKeys ?? PATTERN_LIMITS.keys;
    const nKeys = Object.keys(config.rank_pattern ?? {}).length + Object.keys(config.alpha_pattern ?? {}).length;
    if (nKeys > maxKeys) {
      problems.push({ code: 'too_many_patterns', problem: `rank_pattern and alpha_pattern have more than ${maxKeys} keys (maxPatternKeys, a limit of this implementation)`, key: 'rank_pattern', got: nKeys, detail: `≤ ${maxKeys} (maxPatternKeys)` });
      // Keep matching cheap: patterns are not compiled when the config is refused anyway.
      this.rank = new PatternTable('rank_pattern', {}, []);
      this.alpha = new PatternTable('alpha_pattern', {}, []);
    } else {
      this.rank = new PatternTable('rank_pattern', config.rank_pattern ?? {}, problems);
      this.alpha = new PatternTable('alpha_pattern', config.alpha_pattern ?? {}, problems);
    }

    const t = config.target_modules;
    if (typeof t === 'string') {
      // `_maybe_include_all_linear_layers`: "all-linear" (any case) is a shorthand, not a regex.
      if (t.toLowerCase() === 'all-linear') this.target = { kind: 'unknown' };
      else this.target = { kind: 'regex', re: compileOrReport(t, 'target_modules', t, problems)?.re };
    } else if (t) this.target = { kind: 'list', set: new Set(t) };
    else this.target = { kind: 'unknown' }; // PEFT picks defaults per model architecture

    const x = config.exclude_modules;
    if (typeof x === 'string' && x) this.exclude = { kind: 'regex', re: compileOrReport(x, 'exclude_modules', x, problems)?.re };
    else if (Array.isArray(x) && x.length) this.exclude = { kind: 'list', set: new Set(x) };

    for (const m of effectiveModulesToSave(config, true) ?? []) {
      if (PLAIN.test(m)) this.saved.push({ plain: m });
      else {
        const c = compileOrReport(`(^|.*\\.)${m}($|\\..*)`, `modules_to_save`, m, problems);
        if (c) this.saved.push({ re: c.re, key: `modules_to_save` });
      }
    }

    this.layers = config.layers_to_transform;
    if (this.usesLayers()) {
      const lp = config.layers_pattern;
      // "empty layers_pattern (None, [], or "") means any layer pattern is ok" (check_target_module_exists).
      if (lp == null || lp.length === 0) this.layerRes.push({ re: PyRegex.compile('.*?\\.[^.]*\\.(\\d+)\\.'), key: 'layers_pattern' });
      else for (const p of typeof lp === 'string' ? [lp] : lp) {
        const c = compileOrReport(`.*?\\.${p}\\.(\\d+)\\.`, 'layers_pattern', p, problems);
        if (c) this.layerRes.push(c);
      }
    }

    const regexCount = this.rank.regexCount + this.alpha.regexCount + (this.target.kind === 'regex' ? 1 : 0) + (this.exclude?.kind === 'regex' ? 1 : 0) + this.saved.filter((s) => 're' in s).length + this.layerRes.length;
    const shapes = this.rank.shapes + this.alpha.shapes;
    if (shapes > PATTERN_LIMITS.shapes) {
      problems.push({ code: 'too_many_patterns', problem: `rank_pattern and alpha_pattern keys come in more than ${PATTERN_LIMITS.shapes} shapes (length and dot positions; a limit of this implementation)`, key: 'rank_pattern', got: shapes });
    }
    if (regexCount > PATTERN_LIMITS.regexKeys) {
      problems.push({ code: 'too_many_patterns', problem: `the config has more than ${PATTERN_LIMITS.regexKeys} regular-expression patterns (a limit of this implementation; plain names are not counted)`, key: 'rank_pattern', got: regexCount });
    }
  }

  private usesLayers(): boolean {
    const l = this.layers;
    return l != null && (!Array.isArray(l) || l.length !== 0);
  }

  /** The `rank_pattern` key PEFT uses for module `path`, if any. */
  rankKey(path: string): string | undefined {
    return this.rank.size ? this.rank.find(path, this.budget) : undefined;
  }

  /** The `alpha_pattern` key PEFT uses for module `path`, if any. */
  alphaKey(path: string): string | undefined {
    return this.alpha.size ? this.alpha.find(path, this.budget) : undefined;
  }

  /**
   * Whether PEFT puts LoRA on module `path` (`check_target_module_exists`): true; a reason it does not; or
   * undefined when that depends on the model (`all-linear`, or no `target_modules`).
   */
  targets(path: string): true | NotTargeted | undefined {
    const x = this.exclude;
    if (x) {
      if (x.kind === 'regex' ? x.re && run(x.re, path, this.budget, 'exclude_modules', true) : listHas(x.set, path)) return 'exclude_modules';
    }
    for (const s of this.saved) {
      if ('plain' in s ? !AWKWARD_PATH.test(path) && path.split('.').includes(s.plain) : run(s.re, path, this.budget, s.key, false)) return 'modules_to_save';
      if ('plain' in s && AWKWARD_PATH.test(path)) {
        const re = PyRegex.compile(`(^|.*\\.)${s.plain}($|\\..*)`);
        if (run(re, path, this.budget, 'modules_to_save', false)) return 'modules_to_save';
      }
    }
    const t = this.target!;
    if (t.kind === 'unknown') return undefined;
    if (t.kind === 'regex') return t.re && run(t.re, path, this.budget, 'target_modules', true) ? true : 'target_modules';
    if (t.set.has(path)) return true; // named exactly: layers_to_transform is not consulted
    if (!listHas(t.set, path)) return 'target_modules';
    if (!this.usesLayers()) return true;
    let index: number | undefined;
    for (const l of this.layerRes) {
      const m = l.re.exec(path, this.budget);
      if (m) {
        index = Number(m.group(1));
        break;
      }
    }
    if (index === undefined) return 'layers_to_transform';
    const want = this.layers!;
    return (typeof want === 'number' ? index === want : want.includes(index)) ? true : 'layers_to_transform';
  }
}

/** PEFT's list rule: `key in names or any(key.endswith("." + n) for n in names)`. */
function listHas(set: ReadonlySet<string>, path: string): boolean {
  return dottedSuffixes(path).some((s) => set.has(s));
}

// Convenience wrappers for one-off questions (used by the saver). Tables are cached per pattern object in a
// WeakMap, so they live exactly as long as the config that owns them; each call gets a fresh step budget.
const tables = new WeakMap<object, PatternTable>();

/** The first key of `pattern` (in the object's order) matching module `path`, as PEFT's `get_pattern_key`. */
export function patternKey(pattern: Readonly<Record<string, unknown>>, path: string, field = 'rank_pattern'): string | undefined {
  try {
    let t = tables.get(pattern);
    if (!t) {
      const problems: PatternProblem[] = [];
      t = new PatternTable(field, pattern, problems);
      if (problems.length) throw new PatternError(problems[0]!);
      tables.set(pattern, t);
    }
    return t.size ? t.find(path, { steps: PATTERN_LIMITS.steps }) : undefined;
  } catch (e) {
    if (!(e instanceof PatternError)) throw e;
    throw patternConfigError(e.info);
  }
}

/** A pattern problem as the ConfigError callers see (file adapter_config.json, the config key, the pattern). */
export function patternConfigError(p: PatternProblem): ConfigError {
  return new ConfigError(p.code, p.problem, { file: 'adapter_config.json', key: p.key, got: p.got, detail: p.detail });
}

/** Rank PEFT gives module `path`: `rank_pattern`'s first match, else `r`. */
export function rankFor(config: Pick<PeftConfig, 'r' | 'rank_pattern'>, path: string): number {
  const k = patternKey(config.rank_pattern, path, 'rank_pattern');
  return k === undefined ? config.r : config.rank_pattern[k]!;
}

/** lora_alpha PEFT gives module `path`: `alpha_pattern`'s first match, else `lora_alpha`. */
export function alphaFor(config: Pick<PeftConfig, 'lora_alpha' | 'alpha_pattern'>, path: string): number {
  const k = patternKey(config.alpha_pattern, path, 'alpha_pattern');
  return k === undefined ? config.lora_alpha : config.alpha_pattern[k]!;
}

/** s = α/r, or α/√r with rsLoRA (Kalajdzievski 2023, "A Rank Stabilization Scaling Factor for LoRA"). */
export function scaleOf(alpha: number, rank: number, useRslora: boolean): number {
  return useRslora ? alpha / Math.sqrt(rank) : alpha / rank;
}
