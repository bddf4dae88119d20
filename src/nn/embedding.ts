import { BackendError } from '../errors.js';
import type { Backend, LoRADelta } from '../backends/backend.js';
import { defaultBackend } from '../backends/index.js';
import type { Tensor } from '../tensor.js';
import { fromF64, toF64 } from './float.js';
import { NO_DELTAS, storedWeight, type LayerOptions } from './linear.js';
import { Module } from './module.js';

/**
 * y = E[ids]
 * ids [m] i32, E [vocab,dim] → y [m,dim] (f32)
 * `weightDtype: 'bf16'` keeps E as bf16 (often the largest tensor of a model); rows are widened as they are gathered.
 */
export class Embedding extends Module {
  readonly weight: Tensor;
  readonly backend: Backend;
  /** `LayerOptions.weightDtype`: the storage asked for E. */
  readonly weightDtype: 'f32' | 'bf16';

  constructor(weight: Tensor, opts: LayerOptions = {}) {
    super();
    if (weight.ndim !== 2) throw new BackendError('shape_mismatch', 'an embedding table is 2-D', { expected: '[vocab, dim]', got: `[${weight.shape.join(', ')}]`, where: 'Embedding' });
    this.backend = opts.backend ?? defaultBackend();
    this.weightDtype = opts.weightDtype ?? 'f32';
    // Uploaded as a linear weight: a tied head (Linear over this.weight) then streams it in the layout its GEMV is
    // fastest in (wasm: panels of 4 rows), and `embedding` gathers rows from that layout.
    this.weight = this.own(storedWeight(weight, this.weightDtype), (t) => this.backend.upload(t, { keepBf16: this.weightDtype === 'bf16', linearWeight: true }));
  }

  get vocab(): number {
    return this.weight.shape[0];
  }
  get dim(): number {
    return this.weight.shape[1];
  }

  forward(ids: Tensor): Tensor {
    return this.lookup(ids, NO_DELTAS);
  }

  /** `E[ids] + Σ s·A[ids]·B`, one backend call. */
  lookup(ids: Tensor, deltas: readonly LoRADelta[]): Tensor {
    return this.backend.embedding(ids, this.weight, deltas);
  }

  denseF64(): Float64Array {
    return toF64(this.weight);
  }

  /** A new table `E + dE` (`dE [vocab,dim]` float64), rounded once. */
  merged(dE: Float64Array): Embedding {
    const e = this.denseF64();
    for (let i = 0; i < e.length; i++) e[i] += dE[i];
    return new Embedding(fromF64(e, this.weight.shape, this.weight.dtype), { backend: this.backend, weightDtype: this.weightDtype });
  }

  /** A new table with rows `indices` replaced by `rows [count,dim]` (PEFT trainable tokens). */
  withRows(indices: ArrayLike<number>, rows: Tensor): Embedding {
    const e = this.denseF64();
    const r = toF64(rows);
    const d = this.dim;
    for (let t = 0; t < indices.length; t++) e.set(r.subarray(t * d, (t + 1) * d), indices[t] * d);
    return new Embedding(fromF64(e, this.weight.shape, this.weight.dtype), { backend: this.backend, weightDtype: this.weightDtype });
  }

  /** Frees the tensors this layer uploaded (not ones it was handed resident). Idempotent. */
  dispose(): void {
    this.freeOwned();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  override toString(): string {
    return `Embedding(vocab=${this.vocab}, dim=${this.dim}${this.weight.dtype === 'bf16' ? ', bf16' : ''})`;
  }
}
