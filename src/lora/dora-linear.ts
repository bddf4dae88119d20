import type { Projection } from '../nn/linear.js';
import type { Tensor } from '../tensor.js';
import type { AdapterInit } from './layer.js';
import { LoRALinear } from './lora-linear.js';

/**
 * y = (m / ‖W + s·(A·B)ᵀ‖_row) ⊙ (x·Wᵀ + s·(x·A)·B) + b     (DoRA, Liu et al. 2024; PEFT's weight_norm)
 * x [m,k], W [n,k], A [k,r], B [r,n], m [n], b [n] → y [m,n]
 * A LoRALinear whose first adapter is a DoRA one (DoRA is a per-adapter variant: LoRA adapters stack on it).
 * `loraEnabled = false` is exactly `base.forward(x)` (no row scale). Scale 0 is not off: m/‖W‖ still applies.
 * The norm is cached and recomputed only when an adapter is added, removed or rescaled.
 */
export class DoRALinear extends LoRALinear {
  static override fromBase(base: Projection, adapter?: AdapterInit<Projection>): DoRALinear {
    return super.fromBase(base, adapter) as DoRALinear;
  }

  /** The cached m/‖W + s·(A·B)ᵀ‖ [n] of the DoRA adapter (f32, on the backend). */
  get magnitudeScale(): Tensor | undefined {
    return this.gain;
  }
}
