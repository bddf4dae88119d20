import type { Tensor } from '../tensor.js';

/**
 * What a loaded adapter holds, independent of its file format (PEFT or MLX) and of any model.
 * `peft/` and `mlx/` produce it; `lora/LoRAContainer` applies it onto a module tree.
 * All factors are f32 in the internal layout: `a [in,r]`, `b [r,out]` (PEFT's lora_A [r,in] and
 * lora_B [out,r] are transposed once at load). Embeddings: `a [vocab,r]`, `b [r,dim]`.
 */
export type AdapterModuleKind = 'linear' | 'embedding' | 'dora';

export interface AdapterModule {
  /** Module path in the model, HF names, without `base_model.model.` (`model.layers.0.self_attn.q_proj`). */
  readonly path: string;
  readonly kind: AdapterModuleKind;
  readonly rank: number;
  /** PEFT lora_alpha for this module (after alpha_pattern); for MLX adapters, `scale·rank`. */
  readonly alpha: number;
  /** Effective scale: α/r, α/√r with rsLoRA, or MLX's `scale` as given. */
  readonly scale: number;
  /** in features (embedding: vocab size) and out features (embedding: dim). */
  readonly in: number;
  readonly out: number;
  /** Dtype the factors were stored in on disk (`F32`, `F16`, `BF16`, …); compute is f32. */
  readonly dtype: string;
  /** [in,r] f32 (embedding: [vocab,r]). */
  readonly a: Tensor<'f32'>;
  /** [r,out] f32 (embedding: [r,dim]). */
  readonly b: Tensor<'f32'>;
  /** PEFT `lora_B.bias` [out] (lora_bias=true), scaled with B. */
  readonly bias?: Tensor<'f32'>;
  /** DoRA `lora_magnitude_vector` [out]. */
  readonly magnitude?: Tensor<'f32'>;
  /** The base weight is stored [in,out] (GPT-2 Conv1D, PEFT fan_in_fan_out=true). */
  readonly fanInFanOut: boolean;
}

/**
 * A tensor that replaces a base parameter while the adapter is enabled: `modules_to_save` weights,
 * base biases trained with `bias = all | lora_only`, or `trainable_tokens_delta` rows.
 */
export interface AdapterReplacement {
  /** Module path (`lm_head`, `model.layers.0.self_attn.q_proj`). */
  readonly path: string;
  readonly kind: 'modules_to_save' | 'bias' | 'trainable_tokens';
  /** Parameter name → tensor (f32 for float data): `weight`, `bias`; for trainable tokens `indices` (i32) and `delta` [count,dim] f32. */
  readonly tensors: Readonly<Record<string, Tensor>>;
  /** Dtype on disk. */
  readonly dtype: string;
}

export interface AdapterSpec {
  readonly format: 'peft' | 'mlx';
  /** Adapter name (`default` unless the source names another). */
  readonly name: string;
  /** The parsed config (PeftConfig for PEFT, MlxConfig for MLX); unknown keys kept. */
  readonly config: Readonly<Record<string, unknown>>;
  readonly modules: readonly AdapterModule[];
  readonly replacements: readonly AdapterReplacement[];
  readonly warnings: readonly string[];
  /**
   * MLX adapters may use keys relative to a transformer block (`self_attn.q_proj`) on the last
   * `numLayers` blocks (-1 = all); absent for PEFT, whose paths are absolute.
   */
  readonly mlx?: { readonly numLayers: number; readonly keys?: readonly string[] };
}
