import type { QuantizedLinear } from '../nn/quantized-linear.js';
import type { AdapterInit } from './layer.js';
import type { Projection } from '../nn/linear.js';
import { LoRALinear } from './lora-linear.js';

/**
 * y = x·Ŵᵀ + b + Σ s·((x·A)·B + lora_bias),  Ŵ the dequantised MLX affine weight
 * x [m,k], Ŵ [n,k] (packed u32 + scales/biases), A [k,r], B [r,n] → y [m,n]
 * `loraEnabled = false` is exactly `QuantizedLinear.forward`. Fusing dequantises, merges and re-quantises
 * (or stays dense with `{dequantize: true}`).
 */
export class QLoRALinear extends LoRALinear {
  static override fromBase(base: QuantizedLinear, adapter?: AdapterInit<Projection>): QLoRALinear {
    return super.fromBase(base, adapter) as QLoRALinear;
  }
}
