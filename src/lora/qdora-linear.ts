import type { Projection } from '../nn/linear.js';
import type { QuantizedLinear } from '../nn/quantized-linear.js';
import { DoRALinear } from './dora-linear.js';
import type { AdapterInit } from './layer.js';

/**
 * y = (m / ‖Ŵ + s·(A·B)ᵀ‖_row) ⊙ (x·Ŵᵀ + s·(x·A)·B) + b,  Ŵ the dequantised MLX affine weight
 * x [m,k], Ŵ [n,k] (packed), A [k,r], B [r,n], m [n] → y [m,n]
 * `loraEnabled = false` is exactly `QuantizedLinear.forward`.
 */
export class QDoRALinear extends DoRALinear {
  static override fromBase(base: QuantizedLinear, adapter?: AdapterInit<Projection>): QDoRALinear {
    return super.fromBase(base, adapter) as QDoRALinear;
  }
}
