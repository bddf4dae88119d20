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

  /** `y = E[ids] + Σ sᵢ·A_e[ids]·B_e`;  ids [m] i32, E [vocab,dim] (f32, or bf16 as for `linear`) → y [m,dim] f32. */
  embedding(ids: Tensor, table: Tensor, deltas: readonly LoRADelta[]): Tensor;

  /** Frees backend resources (pipelines, pools). */
  dispose?(): void;
}
