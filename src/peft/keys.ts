import type { PeftConfig } from './config.js';
import type { IssueList } from '../adapter/issues.js';

/**
 * PEFT state-dict key names → per-module groups. peft's `get_peft_model_state_dict` saves
 * `base_model.model.<module>.lora_A.weight` [r,in], `….lora_B.weight` [out,r], `….lora_B.bias` [out],
 * `….lora_embedding_A` [r,vocab], `….lora_embedding_B` [dim,r], `….lora_magnitude_vector` [out] (DoRA), and
 * drops the adapter name (`.default`) — though other writers keep it. Everything else is a replacement:
 * `modules_to_save` weights (plain `<module>.weight`, or `<module>.modules_to_save.<name>.weight`), base biases
 * (bias = all | lora_only) and trainable-token rows (`<module>.token_adapter.trainable_tokens_delta`).
 * Source: huggingface/peft `src/peft/utils/save_and_load.py`.
 */

/** Every PEFT checkpoint key starts with this (PeftModel.base_model is a LoraModel whose `.model` is the HF model). */
export const PEFT_PREFIX = 'base_model.model.';

/** The names of LoRA tensors inside a module; PEFT's ParameterDict/ModuleDict attribute names. */
export const FACTORS = ['lora_A', 'lora_B', 'lora_embedding_A', 'lora_embedding_B', 'lora_magnitude_vector'] as const;
export type Factor = (typeof FACTORS)[number];

const PARAMS = new Set(['weight', 'bias']);

/** Key names of one module's LoRA tensors (the original checkpoint keys). */
export interface FactorKeys {
  path: string;
  lora_A?: string;
  lora_B?: string;
  /** `lora_B.bias` (lora_bias = true). */
  lora_B_bias?: string;
  lora_embedding_A?: string;
  lora_embedding_B?: string;
  lora_magnitude_vector?: string;
}

/** Key names of one replacement: parameter name (`weight`, `bias`, `delta`) → checkpoint key. */
export interface ReplacementKeys {
  path: string;
  kind: 'modules_to_save' | 'bias' | 'trainable_tokens';
  params: Record<string, string>;
}

export interface GroupedKeys {
  modules: Map<string, FactorKeys>;
  /** Keyed by path (`path#bias` for base biases, so a modules_to_save module of the same path stays separate). */
  replacements: Map<string, ReplacementKeys>;
  /** The adapter name the keys carry (`lora_A.<name>.weight`), if any. */
  adapterName?: string;
}

/** Splits off `base_model.model.`; `wraps` counts how many times it was there (2 = a PeftModel saved inside another). */
export function stripPrefix(key: string): { rest: string; wraps: number } {
  let rest = key;
  let wraps = 0;
  while (rest.startsWith(PEFT_PREFIX) && wraps < 2) {
    rest = rest.slice(PEFT_PREFIX.length);
    wraps++;
  }
  return { rest, wraps };
}

export type ParsedKey =
  | { kind: 'factor'; path: string; factor: Factor; param: 'weight' | 'bias'; adapter?: string }
  | { kind: 'trainable_tokens'; path: string; adapter?: string }
  | { kind: 'modules_to_save'; path: string; param: string; adapter?: string }
  | { kind: 'plain'; segments: string[] }
  | { kind: 'unknown'; why: string };

/** Classifies one key (prefix already stripped) by its names alone. */
export function parsePeftKey(key: string): ParsedKey {
  const s = key.split('.');
  const fi = findLast(s, (x) => (FACTORS as readonly string[]).includes(x));
  if (fi > 0) {
    const factor = s[fi] as Factor;
    const path = s.slice(0, fi).join('.');
    const tail = s.slice(fi + 1);
    // lora_A.weight | lora_A.<name>.weight | lora_embedding_A | lora_embedding_A.<name> | lora_magnitude_vector[.<name>][.weight]
    let adapter: string | undefined;
    let param: string = 'weight';
    if (tail.length === 1) {
      if (PARAMS.has(tail[0]!)) param = tail[0]!;
      else adapter = tail[0];
    } else if (tail.length === 2 && PARAMS.has(tail[1]!)) {
      adapter = tail[0];
      param = tail[1]!;
    } else if (tail.length > 2) {
      return { kind: 'unknown', why: `unexpected names after ${factor}` };
    }
    const bare = factor === 'lora_embedding_A' || factor === 'lora_embedding_B';
    if (param === 'bias' && factor !== 'lora_B') return { kind: 'unknown', why: `${factor} has no bias` };
    if (bare && tail.length > 0 && adapter === undefined) return { kind: 'unknown', why: `${factor} is a bare parameter, not a module` };
    return { kind: 'factor', path, factor, param: param as 'weight' | 'bias', adapter };
  }
  const ti = s.indexOf('token_adapter');
  if (ti > 0 && s[ti + 1] === 'trainable_tokens_delta' && s.length <= ti + 3) {
    return { kind: 'trainable_tokens', path: s.slice(0, ti).join('.'), adapter: s[ti + 2] };
  }
  const mi = s.indexOf('modules_to_save');
  if (mi > 0 && s.length >= mi + 3) {
    return { kind: 'modules_to_save', path: s.slice(0, mi).join('.'), adapter: s[mi + 1], param: s.slice(mi + 2).join('.') };
  }
  // PEFT ≥ 0.7 wraps a targeted layer: its own parameters move under `base_layer` (`q_proj.base_layer.bias`).
  return { kind: 'plain', segments: s.filter((x) => x !== 'base_layer') };
}

/**
 * The module a plain key belongs to when it is a `modules_to_save` weight: the shortest leading path that
 * ends with one of the entries (peft matches with `str.endswith`, so `classifier` also takes `pre_classifier`).
 */
export function modulesToSaveMatch(segments: readonly string[], modulesToSave: readonly string[] | null): { path: string; param: string } | undefined {
  if (!modulesToSave || !modulesToSave.length) return undefined;
  for (let i = 1; i < segments.length; i++) {
    const path = segments.slice(0, i).join('.');
    if (modulesToSave.some((m) => path.endsWith(m))) return { path, param: segments.slice(i).join('.') };
  }
  return undefined;
}

/**
 * Groups checkpoint keys per module. Problems (a tensor that fits nothing, two adapter names, a key given
 * twice) go to `issues`; notes go to `warnings`. Shapes are checked later, by the loader.
 */
export function groupPeftKeys(
  keys: readonly string[],
  config: Pick<PeftConfig, 'modules_to_save' | 'bias'>,
  issues: IssueList,
  warnings: string[],
  opts: { file?: string; adapterName?: string } = {},
): GroupedKeys {
  const file = opts.file;
  const modules = new Map<string, FactorKeys>();
  const replacements = new Map<string, ReplacementKeys>();
  const names = new Set<string>();
  let twice = 0;
  let bare = 0;
  let biasWithoutConfig = 0;

  const parsed = keys.map((key) => {
    const { rest, wraps } = stripPrefix(key);
    if (wraps === 2) twice++;
    if (wraps === 0) bare++;
    const p = parsePeftKey(rest);
    if ('adapter' in p && p.adapter !== undefined) names.add(p.adapter);
    return { key, p };
  });

  // One adapter per file: pick the requested name, else the only one present.
  let adapterName: string | undefined;
  if (names.size > 1 && !(opts.adapterName && names.has(opts.adapterName))) {
    issues.add('invalid_adapter', 'the checkpoint holds several adapters; choose one with `adapterName`', { file, expected: 'one adapter name', got: [...names] });
  } else if (names.size) {
    adapterName = opts.adapterName && names.has(opts.adapterName) ? opts.adapterName : [...names][0];
  }

  const put = <T extends object>(map: Map<string, T>, path: string, make: () => T): T => {
    let g = map.get(path);
    if (!g) map.set(path, (g = make()));
    return g;
  };
  const setOnce = (rec: Record<string, string | undefined>, slot: string, key: string, path: string) => {
    if (rec[slot] !== undefined) {
      issues.add('invalid_adapter', 'the same tensor is given twice', { file, tensor: key, module: path, expected: 'one key', got: [rec[slot], key] });
    } else rec[slot] = key;
  };

  for (const { key, p } of parsed) {
    if ('adapter' in p && p.adapter !== undefined && adapterName !== undefined && p.adapter !== adapterName) continue;
    switch (p.kind) {
      case 'factor': {
        const g = put(modules, p.path, () => ({ path: p.path }) as FactorKeys);
        setOnce(g as unknown as Record<string, string>, p.param === 'bias' ? 'lora_B_bias' : p.factor, key, p.path);
        break;
      }
      case 'trainable_tokens': {
        const r = put(replacements, p.path, () => ({ path: p.path, kind: 'trainable_tokens', params: {} }) as ReplacementKeys);
        setOnce(r.params, 'delta', key, p.path);
        break;
      }
      case 'modules_to_save': {
        const r = put(replacements, p.path, () => ({ path: p.path, kind: 'modules_to_save', params: {} }) as ReplacementKeys);
        setOnce(r.params, p.param, key, p.path);
        break;
      }
      case 'plain': {
        const m = modulesToSaveMatch(p.segments, config.modules_to_save);
        if (m) {
          const r = put(replacements, m.path, () => ({ path: m.path, kind: 'modules_to_save', params: {} }) as ReplacementKeys);
          setOnce(r.params, m.param, key, m.path);
        } else if (p.segments.length > 1 && p.segments[p.segments.length - 1] === 'bias') {
          const path = p.segments.slice(0, -1).join('.');
          if (config.bias === 'none') biasWithoutConfig++;
          const r = put(replacements, `${path}#bias`, () => ({ path, kind: 'bias', params: {} }) as ReplacementKeys);
          setOnce(r.params, 'bias', key, path);
        } else {
          const expected = 'a LoRA factor (lora_A/lora_B/…), a modules_to_save weight, a base bias or trainable_tokens_delta';
          issues.add('unknown_tensor', 'tensor fits nothing in a LoRA adapter', { file, tensor: key, expected, got: key });
        }
        break;
      }
      case 'unknown':
        issues.add('unknown_tensor', 'tensor fits nothing in a LoRA adapter', { file, tensor: key, detail: p.why, got: key });
        break;
    }
  }

  if (twice) warnings.push(`${twice} key(s) carry the prefix "${PEFT_PREFIX}" twice (a PeftModel saved inside another): both were removed`);
  if (bare) warnings.push(`${bare} key(s) lack the "${PEFT_PREFIX}" prefix: read as module paths as they are`);
  if (biasWithoutConfig) warnings.push(`${biasWithoutConfig} base bias tensor(s) although bias = "none": they replace the base biases, as peft's load_state_dict would`);
  return { modules, replacements, adapterName };
}

function findLast<T>(a: readonly T[], f: (x: T) => boolean): number {
  for (let i = a.length - 1; i >= 0; i--) if (f(a[i]!)) return i;
  return -1;
}
