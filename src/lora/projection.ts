import type { Backend } from '../backends/backend.js';
import { fromF64, toF64 } from '../nn/float.js';
import type { Projection } from '../nn/linear.js';
import type { Tensor } from '../tensor.js';
import { addScaledProduct, LoRAModule, type FuseOptions, type ForwardOptions, type LayerAdapter } from './layer.js';

/**
 * What every LoRA layer over a Projection (Linear, Conv1D or QuantizedLinear: the weight kind is the base's data)
 * shares: `x [m,k] → y [m,n]` on its base layer's backend, a bank of adapters each with its variant (LoRA or
 * DoRA), and one forward over routes:
 *   y = x·Wᵀ, then per adapter of the row's route, in order: LoRA  y += s·((x·A)·B + lora_bias);
 *   DoRA  y = g ⊙ (y + s·((x·A)·B + lora_bias)),  g = m / ‖W + s·(A·B)ᵀ‖_row;  then y += b.
 * x [m,k], W [n,k] (a Conv1D stores it [k,n]), A [k,r], B [r,n], m, b [n] → y [m,n].
 * Without options the route is the same for every row (the enabled adapters): `loraEnabled = false` is exactly
 * `base.forward(x)`, the same backend call with the same empty delta list.
 */
export abstract class LoRAProjection extends LoRAModule<Projection> {
  protected constructor(base: Projection) {
    super(base);
  }

  get backend(): Backend {
    return this.original.backend;
  }
  get k(): number {
    return this.original.k;
  }
  get n(): number {
    return this.original.n;
  }
  protected get factorDims(): readonly [number, number] {
    return [this.k, this.n];
  }
  protected get inputWidth(): number {
    return this.k;
  }

  /** `opts.adapters[i]`: row i's adapter name, `null` (base) or names to stack; see `ForwardOptions`. */
  forward(x: Tensor, opts?: ForwardOptions): Tensor {
    const route = this.requestedRoute(x, opts);
    if (route) return this.original.projectRouted(x, route);
    if (this.multiPass) return this.base.projectRouted(x, this.activeRoute(this.rowsOf(x)));
    return this.base.project(x, this.deltas, this.rowScale);
  }

  /** The one setter of every DoRA adapter's gain g = m / ‖W + s·(A·B)ᵀ‖ (per output row, over k), in float64. */
  protected override changed(): void {
    for (const ad of this.adapters) {
      if (ad.variant !== 'dora') continue;
      ad.setGain(this.backend.upload(fromF64(this.#gainF64(ad), [this.n], 'f32')));
    }
  }

  #gainF64(ad: LayerAdapter, v?: Float64Array): Float64Array {
    // Step 1: the adapted weight V = W + s·(A·B)ᵀ in nn.Linear orientation [n,k].
    if (!v) {
      v = this.original.denseF64();
      addScaledProduct(v, ad, true);
    }
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

  /**
   * The forward's formula on the weights, in float64, rounded once by the base: LoRA-only is W + Σ s·(A·B)ᵀ,
   * b + Σ s·lora_bias; with DoRA adapters, in order, LoRA W += s·(A·B)ᵀ and DoRA W = g ⊙ (W + s·(A·B)ᵀ) (g from
   * the original W, as in the forward). Given to the base as dW = W' − W.
   */
  protected merge(start: Projection, adapters: readonly LayerAdapter<Projection>[], opts: FuseOptions): Projection {
    const { k, n } = this;
    if (!adapters.some((ad) => ad.variant === 'dora')) {
      const dW = new Float64Array(n * k);
      for (const ad of adapters) addScaledProduct(dW, ad, true);
      return start.merged(dW, loraBias(adapters, n), opts);
    }
    const w = start.denseF64();
    const cur = Float64Array.from(w);
    let db: Float64Array | undefined;
    for (const ad of adapters) {
      if (ad.variant === 'lora') {
        addScaledProduct(cur, ad, true);
        db = addLoraBias(db, ad, n);
        continue;
      }
      const own = this.original.denseF64();
      addScaledProduct(own, ad, true);
      const g = this.#gainF64(ad, own);
      addScaledProduct(cur, ad, true);
      for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) cur[i * k + j] *= g[i];
      if (db || ad.host.bias) {
        db = addLoraBias(db, ad, n)!;
        for (let i = 0; i < n; i++) db[i] *= g[i];
      }
    }
    for (let i = 0; i < cur.length; i++) cur[i] -= w[i];
    return start.merged(cur, db, opts);
  }

  override toString(): string {
    return `${this.constructor.name}(k=${this.k}, n=${this.n}, ${this.describeAdapters()}, ${this.state()})`;
  }
}

function addLoraBias(db: Float64Array | undefined, ad: LayerAdapter, n: number): Float64Array | undefined {
  if (!ad.host.bias) return db;
  const out = db ?? new Float64Array(n);
  const b = toF64(ad.host.bias);
  for (let i = 0; i < n; i++) out[i] += ad.scale * b[i];
  return out;
}

/** `Σ s·lora_bias` over adapters that carry one, or undefined. */
function loraBias(adapters: readonly LayerAdapter[], n: number): Float64Array | undefined {
  let out: Float64Array | undefined;
  for (const ad of adapters) out = addLoraBias(out, ad, n);
  return out;
}
