import { fromF64 } from '../nn/float.js';
import type { Projection } from '../nn/linear.js';
import type { Tensor } from '../tensor.js';
import { toF64 } from '../nn/float.js';
import { addScaledProduct, type AdapterInit, type FuseOptions, type LayerAdapter } from './layer.js';
import { LoRAProjection } from './projection.js';

/**
 * y = (m / ‖W + s·(A·B)ᵀ‖_row) ⊙ (x·Wᵀ + s·(x·A)·B) + b     (DoRA, Liu et al. 2024; PEFT's weight_norm)
 * x [m,k], W [n,k], A [k,r], B [r,n], m [n], b [n] → y [m,n]
 * `loraEnabled = false` is exactly `base.forward(x)` (no row scale). Scale 0 is not off: m/‖W‖ still applies.
 * The norm is cached and recomputed only in `changed()` (adapter added, removed or rescaled).
 */
export class DoRALinear extends LoRAProjection {
  static fromBase(base: Projection, adapter?: AdapterInit<Projection>): DoRALinear {
    const layer = new this(base);
    if (adapter) layer.addAdapter(adapter);
    return layer;
  }

  /** The cached m/‖W + s·(A·B)ᵀ‖ [n] (f32, on the backend). */
  get magnitudeScale(): Tensor | undefined {
    return this.gain;
  }

  forward(x: Tensor): Tensor {
    return this.base.project(x, this.deltas, this.rowScale);
  }

  /** The one setter of the norm: V = W + s·(A·B)ᵀ; g = m / ‖V‖ per output row (over k), in float64. */
  protected override changed(): void {
    const ad = this.adapters.find((a) => a.host.magnitude);
    this.gain?.dispose();
    this.gain = ad ? this.backend.upload(fromF64(this.#gainF64(ad), [this.n], 'f32')) : undefined;
  }

  #weightF64(ad: LayerAdapter): Float64Array {
    // Step 1: the adapted weight V = W + s·(A·B)ᵀ in nn.Linear orientation [n,k].
    const v = this.original.denseF64();
    addScaledProduct(v, ad, true);
    return v;
  }

  #gainF64(ad: LayerAdapter, v = this.#weightF64(ad)): Float64Array {
    // Step 2: its column-wise norm in the paper's words (PEFT: the norm of each output row, over the inputs).
    const { k, n } = this;
    const m = toF64(ad.host.magnitude!);
    const g = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let ss = 0;
      for (let j = 0; j < k; j++) ss += v[i * k + j] ** 2;
      // Step 3: the magnitude over the norm rescales each output.
      g[i] = m[i] / Math.sqrt(ss);
    }
    return g;
  }

  /** W' = g ⊙ V (bias unchanged), given to the base as dW = W' − W in float64, rounded once. */
  protected merge(start: Projection, adapters: readonly LayerAdapter<Projection>[], opts: FuseOptions): Projection {
    const ad = adapters[0];
    const v = this.#weightF64(ad);
    const g = this.#gainF64(ad, v);
    const w = start.denseF64();
    const { k, n } = this;
    for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) v[i * k + j] = g[i] * v[i * k + j] - w[i * k + j];
    return start.merged(v, undefined, opts);
  }

  override toString(): string {
    return `${this.constructor.name}(k=${this.k}, n=${this.n}, ${this.describeAdapters()}, ${this.state()})`;
  }
}
