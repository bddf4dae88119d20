import type { Tensor } from '../tensor.js';

export type BackendName = 'wasm' | 'js' | 'webgpu';

/**
 * One LoRA delta added to a layer's output: `y += scale·(x·A)·B + scale·bias`.
 * `a [k,r]`, `b [r,n]` (the internal layout; PEFT's lora_A [r,k] / lora_B [n,r] are transposed at load),
 * `bias [n]` is PEFT's `lora_B.bias` (lora_bias=true), scaled with B.
 * For embeddings `a` is `[vocab,r]` (rows gathered by id) and `b` is `[r,dim]`.
 */
export interface LoRADelta {
  readonly a: Tensor;
  readonly b: Tensor;
  readonly scale: number;
  readonly bias?: Tensor;
}

/**
 * One adapter a route applies to a row: a LoRA delta, or a DoRA one when `gain` is set
 * (`gain [n]` = m / ‖W + s·(A·B)ᵀ‖ per output row, computed by the layer for this scale).
 */
export interface RouteTerm extends LoRADelta {
  readonly gain?: Tensor;
}

/**
 * Which adapters apply to which rows: `route[i]` lists row i's terms in order; an empty list is the base row.
 * Rows whose lists are the same array object form one group (one shrink per adapter, one expand pass).
 * Per row, with y = x·Wᵀ (no bias), the terms are applied in order, consecutive LoRA terms as one pass:
 *   LoRA run:  y += Σ sᵢ·(x·Aᵢ)·Bᵢ + Σ sᵢ·biasᵢ        DoRA term:  y = g ⊙ (y + s·(x·A)·B + s·bias)
 * then y += bias. (PEFT's order: a DoRA adapter rescales what the adapters before it added.) A row with no terms
 * is exactly the base layer's row; a row whose terms form one pass is exactly `linear(x, w, bias, deltas, gain)`.
 */
export type Route = readonly (readonly RouteTerm[])[];

/** The weight of a linear op: a dense W [n,k] tensor (f32, or bf16 kept by upload) or an MLX-quantised one. */
export type LinearWeight = Tensor | QuantizedWeight;

/** True when `w` is a quantised weight (the weight kind is data: one op takes both). */
export function isQuantized(w: LinearWeight): w is QuantizedWeight {
  return (w as QuantizedWeight).bits !== undefined && (w as QuantizedWeight).scales !== undefined;
}

/**
 * The passes of one row's route: consecutive LoRA terms together, each DoRA term alone with its gain.
 * (`deltas`, `rowScale`) of one pass is what `linear`'s epilogue takes.
 */
export function routePasses(terms: readonly RouteTerm[]): { deltas: RouteTerm[]; rowScale?: Tensor }[] {
  const out: { deltas: RouteTerm[]; rowScale?: Tensor }[] = [];
  for (const t of terms) {
    const last = out[out.length - 1];
    if (t.gain) out.push({ deltas: [t], rowScale: t.gain });
    else if (last && !last.rowScale) last.deltas.push(t);
    else out.push({ deltas: [t] });
  }
  return out;
}

/** The groups of a route: each distinct terms array with the rows that use it, in first-seen order. */
export function routeGroups(route: Route): { terms: readonly RouteTerm[]; rows: number[] }[] {
  const byTerms = new Map<readonly RouteTerm[], number[]>();
  for (let i = 0; i < route.length; i++) {
    const rows = byTerms.get(route[i]);
    if (rows) rows.push(i);
    else byTerms.set(route[i], [i]);
  }
  return [...byTerms].map(([terms, rows]) => ({ terms, rows }));
}

/**
 * MLX affine quantised weight: `w [n, k·bits/32] u32` (values packed little-end first, bits 4 or 8),
 * `scales [n, k/groupSize]`, `biases [n, k/groupSize]`; dequantised `W[i,j] = scales[i,g]·q[i,j] + biases[i,g]`, g = j/groupSize.
 */
export interface QuantizedWeight {
  readonly w: Tensor;
  readonly scales: Tensor;
  readonly biases: Tensor;
  readonly bits: 4 | 8;
  readonly groupSize: number;
  /** k (input features) and n (output features). */
  readonly k: number;
  readonly n: number;
}

/** Options of `Backend.upload`. */
export interface UploadOptions {
  /**
   * The tensor is a base weight `W [n,k]` or an embedding table the caller wants kept as bf16 (half the memory, half
   * the bytes a forward streams). Every backend keeps a bf16 tensor as it is and its `linear` / `embedding` read it
   * directly (wasm: cpp/linear_bf16.h; webgpu: two per u32, unpacked in the shader; js: through float64). Without
   * it, bf16 is widened to f32 on upload. Other dtypes are unaffected.
   */
  keepBf16?: boolean;
  /**
   * The tensor is a linear layer's `W [n,k]` or an embedding table (whose rows a tied head reads as its W), read only
   * by `linear`, `embedding` and through `data`: the backend may store it in the layout its kernels stream fastest
   * (wasm: panels of 4 rows, cpp/linear_panel.h). `data` and `read()` still give the usual row-major values (on wasm,
   * a copy).
   */
  linearWeight?: boolean;
}

/**
 * The compute interface every backend implements. All ops are synchronous: a GPU backend queues the work
 * and returns a device-resident tensor (read it with `await t.read()`).
 *
 * An empty `deltas` list means "adapter off": the op must then run exactly the base computation (same code
 * path, bit-identical output, no extra work). `rowScale [n]` (DoRA's m/‖W'‖) multiplies the pre-bias output.
 */
export interface Backend {
  readonly name: BackendName;

  /** Makes a long-lived weight resident on this backend (copy into wasm memory / upload to GPU). Idempotent. */
  upload(t: Tensor, opts?: UploadOptions): Tensor;

  /**
   * `y = rowScale ⊙ (x·Wᵀ + Σ sᵢ·(x·Aᵢ)·Bᵢ + Σ sᵢ·biasᵢ) + bias`;  x [m,k], W [n,k], bias [n] → y [m,n] f32.
   * W is f32, or bf16 as `upload(W, { keepBf16: true })` left it (computed on directly, f32 accumulation).
   */
  linear(x: Tensor, w: Tensor, bias: Tensor | undefined, deltas: readonly LoRADelta[], rowScale?: Tensor): Tensor;

  /** Same as `linear` with a quantised W (dequantised on the fly). */
  quantizedLinear(x: Tensor, q: QuantizedWeight, bias: Tensor | undefined, deltas: readonly LoRADelta[], rowScale?: Tensor): Tensor;

  /**
   * `linear` / `quantizedLinear` with a route: each row gets its own adapters (see `Route`); x [m,k], `route.length`
   * = m. The base product runs once for the whole batch; rows are grouped by route for the adapter terms. A row's
   * output never depends on the other rows (batch invariance: bit for bit on wasm and js).
   */
  linearRouted?(x: Tensor, w: LinearWeight, bias: Tensor | undefined, route: Route): Tensor;

  /** `y = E[ids] + Σ sᵢ·A_e[ids]·B_e`;  ids [m] i32, E [vocab,dim] (f32, or bf16 as for `linear`) → y [m,dim] f32. */
  embedding(ids: Tensor, table: Tensor, deltas: readonly LoRADelta[]): Tensor;

  // ---- transformer ops (models/ builds decoders from these; every backend implements them) ----------------
  // All take and return f32 tensors on this backend. Each row of the output depends only on the same row of
  // the inputs (and, for attention, on the cache): a row's result never depends on how many rows ride with it.

  /** A zero-filled f32 tensor resident on this backend. */
  zeros(shape: readonly number[]): Tensor;

  /**
   * An f32 tensor resident on this backend whose contents are unspecified until written (KV caches: `attention`
   * reads positions 0 … p only, each written by `kvWrite` first). Saves filling, and touching, memory that a short
   * sequence never reaches. Optional: callers fall back to `zeros`.
   */
  empty?(shape: readonly number[]): Tensor;

  /** RMSNorm per row: `y = x / √(mean(x²) + eps) ⊙ w`;  x [m,d], w [d] → y [m,d]. (HF Llama: f32 throughout.) */
  rmsNorm(x: Tensor, w: Tensor, eps: number): Tensor;

  /** LayerNorm per row: `y = (x − μ) / √(σ² + eps) ⊙ w + b`, σ² the biased variance;  x [m,d], w, b [d] → y [m,d]. */
  layerNorm(x: Tensor, w: Tensor, b: Tensor, eps: number): Tensor;

  /**
   * Rotary embedding in place, HF's rotate_half layout. x [m, heads·hd]; row i is at position `start + i`;
   * `cos`, `sin` [maxPos, hd/2]. For each row, head h, j < hd/2, with (x₁, x₂) = (x[h·hd + j], x[h·hd + j + hd/2]),
   * c = cos[pos, j], s = sin[pos, j]:  x[h·hd + j] = x₁·c − x₂·s;  x[h·hd + j + hd/2] = x₂·c + x₁·s.
   */
  rope(x: Tensor, cos: Tensor, sin: Tensor, heads: number, headDim: number, start: number): void;

  /** `a += b` elementwise, in place (the residual stream); same element count. */
  addInPlace(a: Tensor, b: Tensor): void;

  // Fused decoder steps: one op for what a decoder layer otherwise issues as several (on a GPU each op is a
  // dispatch recorded on the CPU, the cost that sets a decode step's pace). Optional: models/architecture.ts
  // composes the ops above where a backend has none; the result is the same up to f32 rounding.

  /**
   * The residual step and the RMSNorm after it: `x += o` in place, then `y = x / √(mean(x²) + eps) ⊙ w`
   * (as `addInPlace(x, o)` then `rmsNorm(x, w, eps)`);  x, o [m,d], w [d] → y [m,d].
   */
  addRmsNorm?(x: Tensor, o: Tensor, w: Tensor, eps: number): Tensor;

  /** The same with a LayerNorm: `x += o` in place, then `y = (x − μ) / √(σ² + eps) ⊙ w + b` (as `layerNorm`). */
  addLayerNorm?(x: Tensor, o: Tensor, w: Tensor, b: Tensor, eps: number): Tensor;

  /**
   * A layer's rotary embedding and cache write (as `rope(q)`, `rope(k)`, `kvWrite(kCache, k)`, `kvWrite(vCache, v)`):
   * q [m, heads·hd] is rotated in place; k [m, kvHeads·hd] rotated and v as it is go into the caches at positions
   * `start … start+m−1`. k's contents afterwards are unspecified (the composed form rotates it in place).
   */
  ropeKvWrite?(q: Tensor, k: Tensor, v: Tensor, cos: Tensor, sin: Tensor, kCache: Tensor, vCache: Tensor, start: number, shape: AttentionShape): void;

  /**
   * A fused q|k|v projection's split and cache write (as three `sliceColumns` and two `kvWrite`s): qkv
   * [m, (heads + 2·kvHeads)·hd] → q [m, heads·hd]; its k and v columns go into the caches at positions `start … start+m−1`.
   */
  splitQkvKvWrite?(qkv: Tensor, kCache: Tensor, vCache: Tensor, start: number, shape: AttentionShape): Tensor;

  /** SwiGLU: `y = silu(g) ⊙ u`, silu(g) = g / (1 + e^−g);  g, u [m,f] → y [m,f]. */
  swiglu(g: Tensor, u: Tensor): Tensor;

  /** GELU, tanh approximation (GPT-2's gelu_new): `y = ½x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`. */
  geluTanh(x: Tensor): Tensor;

  /** Columns `[start, start + width)` of x [m,c] → [m,width] (GPT-2 splits c_attn's q|k|v). */
  sliceColumns(x: Tensor, start: number, width: number): Tensor;

  /** Rows `[start, start + count)` of x [m,c] → [count,c] (the last position before the LM head). */
  sliceRows(x: Tensor, start: number, count: number): Tensor;

  /**
   * Writes src [m, kvHeads·hd] into a head-major cache [kvHeads, maxLen, hd] at positions `start … start+m−1`:
   * `cache[g, start + i, :] = src[i, g·hd : (g+1)·hd]`.
   */
  kvWrite(cache: Tensor, src: Tensor, start: number, kvHeads: number, headDim: number): void;

  /**
   * Causal grouped-query attention over the cache. q [m, heads·hd]; row i is the query at position p = start + i
   * and attends cache positions 0 … p (both caches [kvHeads, maxLen, hd], already written up to start + m − 1).
   * Head h reads KV head ⌊h / (heads / kvHeads)⌋ (HF repeat_kv).
   * `out[i, h] = Σⱼ softmax_j(scale · q[i,h]·k[g,j]) · v[g,j]`  → [m, heads·hd]; the softmax subtracts the row max.
   * Keys are visited in order 0 … p whatever m is, so a row's output does not depend on the batch.
   */
  attention(q: Tensor, kCache: Tensor, vCache: Tensor, start: number, shape: AttentionShape, scale: number): Tensor;

  /** Frees backend resources (pipelines, pools). */
  dispose?(): void;
}

/** Head counts of one attention op: `heads` query heads share `kvHeads` key/value heads (GQA), each `headDim` wide. */
export interface AttentionShape {
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
}
