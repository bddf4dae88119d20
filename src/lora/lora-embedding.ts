import { routeGroups, type Backend } from '../backends/backend.js';
import type { Embedding } from '../nn/embedding.js';
import { Tensor } from '../tensor.js';
import { addScaledProduct, LoRAModule, type AdapterInit, type ForwardOptions, type LayerAdapter } from './layer.js';

/**
 * y = E[ids] + Σ s·A[ids]·B
 * ids [m] i32, E [vocab,dim], A [vocab,r], B [r,dim] → y [m,dim]
 * `loraEnabled = false` is exactly `Embedding.forward(ids)`.
 */
export class LoRAEmbedding extends LoRAModule<Embedding> {
  static fromBase(base: Embedding, adapter?: AdapterInit<Embedding>): LoRAEmbedding {
    const layer = new LoRAEmbedding(base);
    if (adapter) layer.addAdapter(adapter);
    return layer;
  }

  get backend(): Backend {
    return this.original.backend;
  }

  protected get factorDims(): readonly [number, number] {
    return [this.original.vocab, this.original.dim];
  }

  protected get inputWidth(): number {
    return 1;
  }

  /**
   * `opts.adapters[i]` applies to ids[i] (see `ForwardOptions`). Rows are independent, so each group of rows sharing
   * a route is looked up on its own and written to its rows (hosts with readable outputs: wasm, js).
   */
  forward(ids: Tensor, opts?: ForwardOptions): Tensor {
    const route = this.requestedRoute(ids, opts);
    if (!route) return this.base.lookup(ids, this.deltas);
    const groups = routeGroups(route);
    if (groups.length === 1) return this.original.lookup(ids, groups[0].terms);
    const dim = this.original.dim;
    const idv = ids.data as Int32Array;
    const y = Tensor.zeros([...ids.shape, dim], 'f32');
    const out = y.data as Float32Array;
    for (const g of groups) {
      const part = this.original.lookup(Tensor.from(Int32Array.from(g.rows, (i) => idv[i]), [g.rows.length], 'i32'), g.terms);
      const src = part.data as Float32Array;
      g.rows.forEach((row, i) => out.set(src.subarray(i * dim, (i + 1) * dim), row * dim));
      part.dispose();
    }
    return this.backend.upload(y);
  }

  /** E + Σ s·A·B in float64, rounded once. */
  protected merge(start: Embedding, adapters: readonly LayerAdapter<Embedding>[]): Embedding {
    const dE = new Float64Array(this.original.vocab * this.original.dim);
    for (const ad of adapters) addScaledProduct(dE, ad, false);
    return start.merged(dE);
  }

  override toString(): string {
    return `LoRAEmbedding(vocab=${this.original.vocab}, dim=${this.original.dim}, ${this.describeAdapters()}, ${this.state()})`;
  }
}
