import type { Backend } from '../backends/backend.js';
import type { Embedding } from '../nn/embedding.js';
import type { Tensor } from '../tensor.js';
import { addScaledProduct, LoRAModule, type AdapterInit, type LayerAdapter } from './layer.js';

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

  forward(ids: Tensor): Tensor {
    return this.base.lookup(ids, this.deltas);
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
