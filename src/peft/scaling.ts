import type { PeftConfig } from './config.js';

/**
 * PEFT's per-module rank, alpha and scale, and its target-module rule.
 * Sources: huggingface/peft `src/peft/tuners/lora/model.py` (`_create_and_replace`), `tuners/lora/layer.py`
 * (`update_layer`: scaling = α/r, or α/√r with rsLoRA), `utils/other.py` (`get_pattern_key`) and
 * `tuners/tuners_utils.py` (`check_target_module_exists`).
 */

const compiled = new Map<string, RegExp | null>();

/**
 * Python regex → JS RegExp (anchored with `^…$` by the caller's pattern). Only the syntax that differs
 * and shows up in configs is translated: named groups `(?P<n>…)` and backreferences `(?P=n)`.
 * `null` when the pattern is not a valid regex.
 */
export function pyRegex(source: string): RegExp | null {
  let re = compiled.get(source);
  if (re === undefined) {
    try {
      re = new RegExp(source.replace(/\(\?P</g, '(?<').replace(/\(\?P=(\w+)\)/g, '\\k<$1>'));
    } catch {
      re = null;
    }
    compiled.set(source, re);
  }
  return re;
}

/**
 * The first key of `pattern` (in the object's order) that matches module `path`: key K matches iff
 * `re.match(r"(.*\.)?(K)$", path)`, i.e. K matches a whole dotted suffix of the path. As peft's `get_pattern_key`.
 */
export function patternKey(pattern: Readonly<Record<string, unknown>>, path: string): string | undefined {
  for (const k of Object.keys(pattern)) {
    if (pyRegex(`^(.*\\.)?(${k})$`)?.test(path)) return k;
  }
  return undefined;
}

/** Rank peft gives module `path`: `rank_pattern` first match, else `r`. */
export function rankFor(config: Pick<PeftConfig, 'r' | 'rank_pattern'>, path: string): number {
  const k = patternKey(config.rank_pattern, path);
  return k === undefined ? config.r : config.rank_pattern[k]!;
}

/** lora_alpha peft gives module `path`: `alpha_pattern` first match, else `lora_alpha`. */
export function alphaFor(config: Pick<PeftConfig, 'lora_alpha' | 'alpha_pattern'>, path: string): number {
  const k = patternKey(config.alpha_pattern, path);
  return k === undefined ? config.lora_alpha : config.alpha_pattern[k]!;
}

/** s = α/r, or α/√r with rsLoRA (Kalajdzievski 2023, "A Rank Stabilization Scaling Factor for LoRA"). */
export function scaleOf(alpha: number, rank: number, useRslora: boolean): number {
  return useRslora ? alpha / Math.sqrt(rank) : alpha / rank;
}

/** Pattern keys that are not valid regexes (reported as config issues by the loader). */
export function badPatternKeys(config: Pick<PeftConfig, 'rank_pattern' | 'alpha_pattern'>): string[] {
  return [...Object.keys(config.rank_pattern), ...Object.keys(config.alpha_pattern)].filter((k) => pyRegex(`^(.*\\.)?(${k})$`) === null);
}

type TargetFields = Pick<PeftConfig, 'target_modules' | 'exclude_modules' | 'layers_to_transform' | 'layers_pattern'>;

function listOrRegexMatches(spec: string | string[], path: string): boolean {
  if (typeof spec === 'string') return pyRegex(`^(?:${spec})$`)?.test(path) ?? false;
  return spec.some((t) => path === t || path.endsWith(`.${t}`));
}

/**
 * Whether peft would have put LoRA on module `path` (`check_target_module_exists`): a string is a regex that
 * must match the whole path, a list matches by exact name or dotted suffix, then `layers_to_transform`
 * filters by block index. `undefined` when it cannot tell without the model (`all-linear`, no targets).
 */
export function isTargeted(config: TargetFields, path: string): boolean | undefined {
  const t = config.target_modules;
  if (t === null || t === 'all-linear') return undefined;
  if (config.exclude_modules !== null && listOrRegexMatches(config.exclude_modules, path)) return false;
  if (typeof t === 'string') return listOrRegexMatches(t, path);
  if (t.includes(path)) return true;
  if (!listOrRegexMatches(t, path)) return false;
  const layers = config.layers_to_transform;
  if (layers === null || (Array.isArray(layers) && layers.length === 0)) return true;
  let index: RegExpMatchArray | null = null;
  const patterns = config.layers_pattern === null ? [] : typeof config.layers_pattern === 'string' ? [config.layers_pattern] : config.layers_pattern;
  if (patterns.length === 0) index = path.match(/^.*\.[^.]*\.(\d+)\./);
  else for (const p of patterns) if ((index = pyRegex(`^.*\\.(?:${p})\\.(\\d+)\\.`)?.exec(path) ?? null)) break;
  if (!index) return false;
  const i = Number(index[1]);
  return typeof layers === 'number' ? i === layers : layers.includes(i);
}
