import type { AttentionShape, Backend } from '../backends/backend.js';
import type { Tensor } from '../tensor.js';
import type { LayerOptions } from '../nn/linear.js';
import type { Module } from '../nn/module.js';
import { LayerNorm, RMSNorm } from '../nn/norm.js';
import type { ConfigReader, DecoderConfig } from './config.js';
import type { KVCache } from './kv-cache.js';
import type { ExpectedTensor, WeightBag } from './weights.js';

/** Options of one decoder forward. */
export interface DecoderForwardOptions {
  /** Run only the first `layers` decoder layers, then the final norm and head (early exit; default all). */
  readonly layers?: number;
  /** Logits for the last row only (generation); default every row. */
  readonly lastOnly?: boolean;
}

/**
 * A built decoder: its module tree hangs under the CausalLM (HF paths, so PEFT adapters apply by name) and
 * `forward` walks it, looking children up at call time so LoRA wrappers put in by `container.apply` are used.
 */
export interface Decoder {
  readonly config: DecoderConfig;
  /**
   * ids [m] i32 at positions `start … start+m−1` (the cache holds `start` positions) → logits [m or 1, vocab] f32
   * on the backend. Writes K/V of the layers it runs at those positions.
   */
  forward(ids: Tensor, start: number, cache: KVCache, opts?: DecoderForwardOptions): Tensor;
}

/**
 * One architecture = one file (models/llama.ts, qwen2.ts, mistral.ts, gpt2.ts) registering this: how to read its
 * config.json, which tensors it needs, and how to build its modules under `root`.
 */
export interface Architecture<C extends DecoderConfig = DecoderConfig> {
  /** HF `model_type` values it handles. */
  readonly modelTypes: readonly string[];
  parseConfig(r: ConfigReader): C;
  tensors(c: C): ExpectedTensor[];
  create(root: Module, c: C, weights: WeightBag, opts: LayerOptions): Decoder;
}

const registry = new Map<string, Architecture>();

/** Adds an architecture (adding one is one new file calling this). */
export function registerArchitecture<C extends DecoderConfig>(arch: Architecture<C>): void {
  for (const t of arch.modelTypes) registry.set(t, arch as unknown as Architecture);
}

export function architectureFor(modelType: string): Architecture | undefined {
  return registry.get(modelType);
}

export function supportedModelTypes(): string[] {
  return [...registry.keys()];
}

/**
 * The common end of every decoder: logits = head(norm(x)) for every row, or for the last row only (generation),
 * disposing x and the intermediates. x [m, d] → [m or 1, vocab]. With `residual`, x += residual first (the last
 * layer's residual step, fused with the norm where the backend can: `addAndNorm`).
 */
export function finalLogits(backend: Backend, norm: Module, head: Module, x: Tensor, lastOnly: boolean | undefined, residual?: Tensor): Tensor {
  const m = x.shape[0];
  let h = residual ? addAndNorm(backend, x, residual, norm) : (norm as Forwardable).forward(x);
  x.dispose();
  if (lastOnly && m > 1) {
    const last = backend.sliceRows(h, m - 1, 1);
    h.dispose();
    h = last;
  }
  const logits = (head as Forwardable).forward(h);
  h.dispose();
  return logits;
}

type Forwardable = Module & { forward(x: Tensor): Tensor };

/**
 * Writes this layer's k, v [m, kvHeads·hd] into the cache at `start …` and attends q over it (causal GQA);
 * q, k and v are consumed (disposed). → [m, heads·hd].
 */
export function cachedAttention(b: Backend, cache: KVCache, layer: number, q: Tensor, k: Tensor, v: Tensor, start: number, shape: AttentionShape, scale: number): Tensor {
  b.kvWrite(cache.k[layer], k, start, shape.kvHeads, shape.headDim);
  b.kvWrite(cache.v[layer], v, start, shape.kvHeads, shape.headDim);
  k.dispose();
  v.dispose();
  const a = b.attention(q, cache.k[layer], cache.v[layer], start, shape, scale);
  q.dispose();
  return a;
}

/**
 * The residual step and the norm that follows it: `x += o` in place, then `norm(x)`; o is consumed (disposed).
 * One op where the backend fuses the norm (`addRmsNorm`, `addLayerNorm`), the two ops otherwise.
 */
export function addAndNorm(b: Backend, x: Tensor, o: Tensor, norm: Module): Tensor {
  const fused =
    b.addRmsNorm && norm instanceof RMSNorm ? b.addRmsNorm(x, o, norm.weight, norm.eps)
    : b.addLayerNorm && norm instanceof LayerNorm ? b.addLayerNorm(x, o, norm.weight, norm.bias, norm.eps)
    : undefined;
  if (fused) {
    o.dispose();
    return fused;
  }
  b.addInPlace(x, o);
  o.dispose();
  return (norm as Forwardable).forward(x);
}

/**
 * Attention from a fused q|k|v projection (GPT-2's c_attn): qkv [m, (heads + 2·kvHeads)·hd] split into q, k, v, k and
 * v written into the cache at `start …` (one op where the backend fuses them, `splitQkvKvWrite`), then causal GQA of q
 * over the cache. qkv is consumed (disposed). → [m, heads·hd].
 */
export function fusedQkvAttention(b: Backend, cache: KVCache, layer: number, qkv: Tensor, start: number, shape: AttentionShape, scale: number): Tensor {
  const [qw, kw] = [shape.heads * shape.headDim, shape.kvHeads * shape.headDim];
  if (b.splitQkvKvWrite) {
    const q = b.splitQkvKvWrite(qkv, cache.k[layer], cache.v[layer], start, shape);
    qkv.dispose();
    const a = b.attention(q, cache.k[layer], cache.v[layer], start, shape, scale);
    q.dispose();
    return a;
  }
  const q = b.sliceColumns(qkv, 0, qw);
  const k = b.sliceColumns(qkv, qw, kw);
  const v = b.sliceColumns(qkv, qw + kw, kw);
  qkv.dispose();
  return cachedAttention(b, cache, layer, q, k, v, start, shape, scale);
}

/**
 * A rotary layer's attention: rope(q), rope(k), k and v into the cache at `start …` (one op where the backend fuses
 * them, `ropeKvWrite`), then causal GQA of q over the cache. q, k and v are consumed (disposed). → [m, heads·hd].
 */
export function ropedAttention(b: Backend, cache: KVCache, layer: number, q: Tensor, k: Tensor, v: Tensor, rope: { cos: Tensor; sin: Tensor }, start: number, shape: AttentionShape, scale: number): Tensor {
  if (b.ropeKvWrite) {
    b.ropeKvWrite(q, k, v, rope.cos, rope.sin, cache.k[layer], cache.v[layer], start, shape);
    k.dispose();
    v.dispose();
    const a = b.attention(q, cache.k[layer], cache.v[layer], start, shape, scale);
    q.dispose();
    return a;
  }
  b.rope(q, rope.cos, rope.sin, shape.heads, shape.headDim, start);
  b.rope(k, rope.cos, rope.sin, shape.kvHeads, shape.headDim, start);
  return cachedAttention(b, cache, layer, q, k, v, start, shape, scale);
}

/** The child `name` of `parent` as it is now (a LoRA wrapper after apply). */
export function child<T extends Module = Module & { forward(x: Tensor): Tensor }>(parent: Module, name: string): T {
  return parent.children.get(name) as T;
}
