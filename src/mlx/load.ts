import { bytesPer, isFloatDType } from '../adapter/convert-f32.js';
import { IssueList } from '../adapter/issues.js';
import { applyFinitePolicy, diskFloatTensor, loadLimits, readConfigJson, safetensorsTensors, type LoadOptions, type RawTensor } from '../adapter/raw.js';
import type { AdapterModule, AdapterSpec } from '../adapter/spec.js';
import { AdapterError } from '../errors.js';
import { toFileSet, type AdapterSource, type FileSet } from '../io/fileset.js';
import { parseMlxConfig, type MlxConfig } from './config.js';

/**
 * Loads an MLX adapter folder (mlx-lm / mlx-swift-lm): `adapter_config.json` + `adapters.safetensors` holding
 * `<path>.lora_a [in,r]`, `<path>.lora_b [r,out]` and, for DoRA, `<path>.m [out]`. MLX already uses our layout,
 * so the factors are kept as stored (their dtype too; each backend widens on upload). The scale is MLX's own (`lora_parameters.scale`, y += s·(x·a)·b);
 * alpha is reported as scale·rank. Paths are kept as written: absolute (`model.layers.0.self_attn.q_proj`) or
 * relative to a block (`self_attn.q_proj`), resolved by LoRAContainer with `spec.mlx`.
 */

export const MLX_FILES = { config: 'adapter_config.json', weights: 'adapters.safetensors' } as const;

/** Tensor suffixes of mlx-lm's LoRALinear / DoRALinear / LoRAEmbedding. */
const MLX_SUFFIXES = { lora_a: 'a', lora_b: 'b', m: 'm' } as const;

/** Last path segments of embedding tables (mlx-lm's LoRAEmbedding wraps nn.Embedding under these names). */
const EMBEDDING_NAMES = /^(embed_tokens|wte|word_embeddings|embed_in|tok_embeddings|shared)$/;

/** The options of every adapter loader (LoadOptions carries the caps, `limits`). */
export type MlxLoadOptions = LoadOptions;

export async function loadMLX(source: AdapterSource, opts: MlxLoadOptions = {}): Promise<AdapterSpec> {
  const files = await toFileSet(source, { fetch: opts.fetch, limits: opts.limits });
  return loadMLXFrom(files, await readConfigJson(files, MLX_FILES.config, opts), opts);
}

/** `loadMLX` for a FileSet whose config JSON was already read (used by format detection). */
export async function loadMLXFrom(files: FileSet, rawConfig: unknown, opts: MlxLoadOptions = {}): Promise<AdapterSpec> {
  const config = parseMlxConfig(rawConfig, MLX_FILES.config);
  const bytes = await files.readAll(MLX_FILES.weights, { signal: opts.signal, onProgress: opts.onProgress });
  if (!bytes) throw new AdapterError('weights_missing', 'adapter weights not found', { file: files.name, expected: MLX_FILES.weights, got: 'no such file' });
  const tensors = safetensorsTensors(bytes, MLX_FILES.weights, loadLimits(files, opts));
  return applyFinitePolicy(specFromMlx(config, tensors, { adapterName: opts.adapterName }), opts.checkFinite, MLX_FILES.weights);
}

interface Group {
  path: string;
  a?: string;
  b?: string;
  m?: string;
}

const shapeStr = (s: readonly number[]) => `[${s.join(', ')}]`;

/** Builds the spec from a parsed MLX config and its tensors. */
export function specFromMlx(config: MlxConfig, tensors: ReadonlyMap<string, RawTensor>, opts: { file?: string; adapterName?: string } = {}): AdapterSpec {
  const file = opts.file ?? MLX_FILES.weights;
  const issues = new IssueList(`invalid MLX adapter ${file}`);
  const groups = new Map<string, Group>();
  for (const key of tensors.keys()) {
    const dot = key.lastIndexOf('.');
    const suffix = key.slice(dot + 1);
    if (dot <= 0 || !(suffix in MLX_SUFFIXES)) {
      issues.add('unknown_tensor', 'tensor fits nothing in an MLX adapter', { file, tensor: key, expected: '<module>.lora_a, <module>.lora_b or <module>.m', got: key });
      continue;
    }
    const path = key.slice(0, dot);
    let g = groups.get(path);
    if (!g) groups.set(path, (g = { path }));
    g[MLX_SUFFIXES[suffix as keyof typeof MLX_SUFFIXES]] = key;
  }

  const { rank: r, scale } = config.lora_parameters;
  const dora = config.fine_tune_type === 'dora';
  const modules: AdapterModule[] = [];
  const plans: { g: Group; rank: number; in: number; out: number; dtype: string }[] = [];
  for (const g of groups.values()) {
    if (!g.a || !g.b) {
      const present = g.a ?? g.b ?? g.m!;
      issues.add('unpaired_factor', `${[!g.a && 'lora_a', !g.b && 'lora_b'].filter(Boolean).join(' and ')} missing for this module`, { file, tensor: present, module: g.path, expected: 'lora_a and lora_b', got: present });
      continue;
    }
    const A = tensors.get(g.a)!;
    const B = tensors.get(g.b)!;
    const M = g.m ? tensors.get(g.m) : undefined;
    const bad = [[g.a, A], [g.b, B], [g.m, M]].filter(([, t]) => t && !isFloatDType((t as RawTensor).dtype)) as [string, RawTensor][];
    for (const [k, t] of bad) issues.add('bad_dtype', 'LoRA tensors must be floating point', { file, tensor: k, expected: 'F32, F16, BF16 or F64', got: t.dtype });
    if (bad.length) continue;
    if (A.shape.length !== 2 || B.shape.length !== 2) {
      issues.add('shape_mismatch', 'lora_a must be [in, r] and lora_b [r, out]', { file, module: g.path, expected: '2-D factors', got: `${shapeStr(A.shape)}, ${shapeStr(B.shape)}` });
      continue;
    }
    const [inF, rank] = A.shape as [number, number];
    const [rankB, outF] = B.shape as [number, number];
    if (rank !== rankB) {
      issues.add('rank_mismatch', 'lora_a and lora_b disagree on the rank', { file, module: g.path, expected: `lora_b [${rank}, ${outF}]`, got: `lora_b ${shapeStr(B.shape)}` });
      continue;
    }
    if (rank !== r) {
      issues.add('rank_mismatch', 'tensor rank does not match the config', { file, tensor: g.a, module: g.path, expected: r, got: rank, detail: `lora_parameters.rank = ${r}` });
      continue;
    }
    if (M && (M.shape.length !== 1 || M.shape[0] !== outF)) {
      issues.add('shape_mismatch', 'DoRA magnitude m must be [out]', { file, tensor: g.m, expected: `[${outF}]`, got: shapeStr(M.shape) });
      continue;
    }
    if (dora && !M) {
      issues.add('unpaired_factor', 'fine_tune_type is dora but the magnitude m is missing', { file, module: g.path, expected: `${g.path}.m`, got: 'absent' });
      continue;
    }
    const dtype = [A, B, M].filter((t): t is RawTensor => !!t).map((t) => t.dtype).reduce((w, d) => (bytesPer(d) > bytesPer(w) ? d : w));
    plans.push({ g, rank, in: inF, out: outF, dtype });
  }
  issues.throwIfAny('adapter');
  if (!plans.length) throw new AdapterError('invalid_adapter', 'the adapter holds no LoRA tensors', { file, expected: 'lora_a/lora_b pairs', got: 'none' });

  const disk = (key: string, shape: readonly number[]) => {
    const t = tensors.get(key)!;
    return diskFloatTensor(t.dtype, t.data, shape, key);
  };
  for (const p of plans) {
    const last = p.g.path.split('.').pop()!;
    modules.push({
      path: p.g.path,
      kind: p.g.m ? 'dora' : EMBEDDING_NAMES.test(last) ? 'embedding' : 'linear',
      rank: p.rank,
      alpha: scale * p.rank,
      scale,
      in: p.in,
      out: p.out,
      dtype: p.dtype,
      a: disk(p.g.a!, [p.in, p.rank]),
      b: disk(p.g.b!, [p.rank, p.out]),
      ...(p.g.m ? { magnitude: disk(p.g.m, [p.out]) } : {}),
      fanInFanOut: false,
    });
  }
  const keys = config.lora_parameters.keys;
  return {
    format: 'mlx',
    name: opts.adapterName ?? 'default',
    config,
    modules,
    replacements: [],
    warnings: [],
    mlx: { numLayers: config.num_layers, ...(keys ? { keys } : {}) },
  };
}
