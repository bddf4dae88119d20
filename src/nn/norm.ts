import type { Backend } from '../backends/backend.js';
import { defaultBackend } from '../backends/index.js';
import { Tensor } from '../tensor.js';
import { toF64 } from './float.js';
import { Module } from './module.js';

/** A 1-D parameter as a resident f32 tensor (bf16/f16 checkpoints widen exactly). */
export function f32Param(t: Tensor, backend: Backend): Tensor {
  return backend.upload(t.dtype === 'f32' ? t : Tensor.from(Float32Array.from(toF64(t)), t.shape, 'f32'));
}

/**
 * y = x / √(mean(x²) + eps) ⊙ w
 * x [m,d], w [d] → y [m,d] (Llama, Qwen2, Mistral: `input_layernorm`, `post_attention_layernorm`, `model.norm`)
 */
export class RMSNorm extends Module {
  readonly weight: Tensor;
  readonly backend: Backend;
  constructor(
    weight: Tensor,
    readonly eps: number,
    opts: { backend?: Backend } = {},
  ) {
    super();
    this.backend = opts.backend ?? defaultBackend();
    this.weight = f32Param(weight, this.backend);
  }
  forward(x: Tensor): Tensor {
    return this.backend.rmsNorm(x, this.weight, this.eps);
  }
  override toString(): string {
    return `RMSNorm(d=${this.weight.size}, eps=${this.eps})`;
  }
}

/**
 * y = (x − μ) / √(σ² + eps) ⊙ w + b
 * x [m,d], w, b [d] → y [m,d] (GPT-2: `ln_1`, `ln_2`, `ln_f`)
 */
export class LayerNorm extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  readonly backend: Backend;
  constructor(
    weight: Tensor,
    bias: Tensor,
    readonly eps: number,
    opts: { backend?: Backend } = {},
  ) {
    super();
    this.backend = opts.backend ?? defaultBackend();
    this.weight = f32Param(weight, this.backend);
    this.bias = f32Param(bias, this.backend);
  }
  forward(x: Tensor): Tensor {
    return this.backend.layerNorm(x, this.weight, this.bias, this.eps);
  }
  override toString(): string {
    return `LayerNorm(d=${this.weight.size}, eps=${this.eps})`;
  }
}
