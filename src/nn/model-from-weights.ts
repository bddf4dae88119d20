import type { Backend } from '../backends/backend.js';
import type { Tensor } from '../tensor.js';
import { Conv1D } from './conv1d.js';
import { Embedding } from './embedding.js';
import { Linear } from './linear.js';
import { Module, setPath } from './module.js';
import { QUANTIZE_VALUES, QuantizedLinear } from './quantized-linear.js';

/** Last path segments that name embedding tables in HF checkpoints (Llama, GPT-2, BERT, T5, OPT, BART…). */
export const EMBEDDING_NAMES = [
  'embed_tokens',
  'embed_positions',
  'wte',
  'wpe',
  'word_embeddings',
  'position_embeddings',
  'token_type_embeddings',
  'shared',
  'relative_attention_bias',
] as const;

/** Last segments of GPT-2's Conv1D layers (`model_type: 'gpt2'`). */
export const GPT2_CONV1D_NAMES = ['c_attn', 'c_proj', 'c_fc', 'q_attn'] as const;

export interface ModelFromWeightsOptions {
  backend?: Backend;
  /** HF `model_type`; `'gpt2'` makes c_attn/c_proj/c_fc Conv1D layers. */
  modelType?: string;
  /** Module paths (or last segments) holding embedding tables, in addition to EMBEDDING_NAMES. */
  embeddings?: readonly string[];
  /** Module paths (or last segments) whose 2-D weight is GPT-2 Conv1D `[in,out]`; `true` for every 2-D weight but embeddings. */
  conv1d?: readonly string[] | boolean;
  /** MLX quantisation of `weight`/`scales`/`biases` triples; inferred from shapes when absent. */
  quantization?: { bits: 4 | 8; groupSize: number };
  /** Storage of Linear / Conv1D / Embedding weights (`LayerOptions.weightDtype`): `'bf16'` halves them; default `'f32'`. */
  weightDtype?: 'f32' | 'bf16';
}

/** What `modelFromWeights` built, and the tensors it did not use (norms, buffers…). */
export interface BuiltModel {
  model: Module;
  unused: string[];
}

type Weights = ReadonlyMap<string, Tensor> | Readonly<Record<string, Tensor>>;

function matches(path: string, names: readonly string[]): boolean {
  const last = path.slice(path.lastIndexOf('.') + 1);
  return names.some((n) => n === path || n === last);
}

/** bits/groupSize of an MLX triple from its shapes: the first `bits` giving a valid group size. */
function inferQuantization(w: Tensor, scales: Tensor): { bits: 4 | 8; groupSize: number } | undefined {
  for (const bits of QUANTIZE_VALUES.bits) {
    const groupSize = (w.shape[1] * 32) / bits / scales.shape[1];
    if ((QUANTIZE_VALUES.groupSize as readonly number[]).includes(groupSize)) return { bits, groupSize };
  }
  return undefined;
}

/**
 * Builds a tree of base layers from a checkpoint's tensor names and shapes (HF paths):
 * `X.weight` 2-D → Linear (+ `X.bias`); embedding tables (by name or option) → Embedding; GPT-2 Conv1D
 * weights `[in,out]` (by option or `modelType: 'gpt2'`) → Conv1D; MLX triples `X.weight` u32 + `X.scales` +
 * `X.biases` → QuantizedLinear. Other tensors (norms, buffers) are listed in `unused`.
 */
export function modelFromWeightsWithReport(tensors: Weights, options: ModelFromWeightsOptions = {}): BuiltModel {
  const map = tensors instanceof Map ? tensors : new Map(Object.entries(tensors as Record<string, Tensor>));
  const used = new Set<string>();
  const model = new Module();
  const opts = { backend: options.backend };
  const embeddings = [...EMBEDDING_NAMES, ...(options.embeddings ?? [])];
  const conv = options.conv1d === true ? true : [...(options.conv1d || []), ...(options.modelType === 'gpt2' ? GPT2_CONV1D_NAMES : [])];
  for (const [name, w] of map) {
    if (!name.endsWith('.weight') || w.ndim !== 2) continue;
    const path = name.slice(0, -'.weight'.length);
    const bias = map.get(`${path}.bias`);
    const scales = map.get(`${path}.scales`);
    const biases = map.get(`${path}.biases`);
    let layer: Module;
    if (w.dtype === 'u32' && scales && biases) {
      const q = options.quantization ?? inferQuantization(w, scales);
      if (!q) continue;
      layer = new QuantizedLinear(w, scales, biases, { ...q, bias, ...opts });
      used.add(`${path}.scales`).add(`${path}.biases`);
    } else if (matches(path, embeddings)) {
      layer = new Embedding(w, { ...opts, weightDtype: options.weightDtype });
    } else if (conv === true || matches(path, conv)) {
      layer = new Conv1D(w, bias, { ...opts, weightDtype: options.weightDtype });
    } else {
      layer = new Linear(w, bias, { ...opts, weightDtype: options.weightDtype });
    }
    if (bias && !(layer instanceof Embedding)) used.add(`${path}.bias`);
    used.add(name);
    setPath(model, path, layer);
  }
  return { model, unused: [...map.keys()].filter((k) => !used.has(k)) };
}

/** `modelFromWeightsWithReport(...).model`. */
export function modelFromWeights(tensors: Weights, options: ModelFromWeightsOptions = {}): Module {
  return modelFromWeightsWithReport(tensors, options).model;
}
