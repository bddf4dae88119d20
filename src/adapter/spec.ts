import type { Tensor } from '../tensor.js';

/**
 * What a loaded adapter holds, independent of its file format (PEFT or MLX) and of any model.
 * `peft/` and `mlx/` produce it; `lora/LoRAContainer` applies it onto a module tree.
 * Factors are in the internal layout `a [in,r]`, `b [r,out]` (PEFT's lora_A [r,in] and lora_B [out,r] are
 * transposed once at load; embeddings: `a [vocab,r]`, `b [r,dim]`), kept in their on-disk float dtype
 * (f32, f16 or bf16; F64 is narrowed to f32): each backend widens them on upload, and compute is f32.
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
  /** [in,r] (embedding: [vocab,r]), on-disk dtype. */
  readonly a: Tensor<SpecFloat>;
  /** [r,out] (embedding: [r,dim]), on-disk dtype. */
  readonly b: Tensor<SpecFloat>;
  /** PEFT `lora_B.bias` [out] (lora_bias=true), scaled with B; on-disk dtype. */
  readonly bias?: Tensor<SpecFloat>;
  /** DoRA `lora_magnitude_vector` [out]; on-disk dtype. */
  readonly magnitude?: Tensor<SpecFloat>;
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
  /** Tensors holding NaN/±Inf, when the load scanned for them (`checkFinite: 'warn'`). */
  readonly nonFinite?: readonly NonFinite[];
}

/** The float dtypes a spec tensor keeps: f16 and bf16 as stored, f32 (F32, and F64 narrowed as torch's `.float()`). */
export type SpecFloat = 'f32' | 'f16' | 'bf16';

/** One adapter tensor holding NaN or ±Inf: how many, and the first. */
export interface NonFinite {
  /** `<module path> a|b|bias|magnitude`, or `<replacement path> <param>`. */
  readonly tensor: string;
  readonly count: number;
  readonly index: number;
  readonly value: number;
}
