import type { Projection } from '../nn/linear.js';
import type { AdapterInit } from './layer.js';
import { LoRAProjection } from './projection.js';

/**
 * y = x·Wᵀ + b + Σ s·((x·A)·B + lora_bias)       (DoRA adapters in the bank: see LoRAProjection)
 * x [m,k], W [n,k] (a Conv1D stores it [k,n]), A [k,r], B [r,n], b [n] → y [m,n]
 * `loraEnabled = false` is exactly `base.forward(x)`: the same backend call with the same empty delta list.
 * The base may be a Linear, Conv1D or QuantizedLinear (the weight kind is data); DoRA is a per-adapter variant.
 */
export class LoRALinear extends LoRAProjection {
  /** Wraps a Linear, Conv1D or QuantizedLinear, optionally with a first adapter. */
  static fromBase(base: Projection, adapter?: AdapterInit<Projection>): LoRALinear {
    const layer = new this(base);
    if (adapter) layer.addAdapter(adapter);
    return layer;
  }
}
