import type { Projection } from '../nn/linear.js';
import type { Tensor } from '../tensor.js';
import { addScaledProduct, loraBiasF64, type AdapterInit, type FuseOptions, type LayerAdapter } from './layer.js';
import { LoRAProjection } from './projection.js';

/**
 * y = x·Wᵀ + b + Σ s·((x·A)·B + lora_bias)
 * x [m,k], W [n,k] (a Conv1D stores it [k,n]), A [k,r], B [r,n], b [n] → y [m,n]
 * `loraEnabled = false` is exactly `base.forward(x)`: the same backend call with the same empty delta list.
 */
export class LoRALinear extends LoRAProjection {
  /** Wraps a Linear, Conv1D or QuantizedLinear, optionally with a first adapter. */
  static fromBase(base: Projection, adapter?: AdapterInit<Projection>): LoRALinear {
    const layer = new this(base);
    if (adapter) layer.addAdapter(adapter);
    return layer;
  }

  forward(x: Tensor): Tensor {
    return this.base.project(x, this.deltas);
  }

  /** W + Σ s·(A·B)ᵀ and b + Σ s·lora_bias, in float64, rounded once (the base applies its own layout). */
  protected merge(start: Projection, adapters: readonly LayerAdapter<Projection>[], opts: FuseOptions): Projection {
    const dW = new Float64Array(this.n * this.k);
    for (const ad of adapters) addScaledProduct(dW, ad, true);
    return start.merged(dW, loraBiasF64(adapters, this.n), opts);
  }

  override toString(): string {
    return `${this.constructor.name}(k=${this.k}, n=${this.n}, ${this.describeAdapters()}, ${this.state()})`;
  }
}
