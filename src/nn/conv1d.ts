import { BackendError } from '../errors.js';
import type { Backend, LoRADelta, Route } from '../backends/backend.js';
import { defaultBackend } from '../backends/index.js';
import { Tensor } from '../tensor.js';
import { fromF64, toF64 } from './float.js';
import { addBias, NO_DELTAS, routed, storedWeight, type LayerOptions, type Projection } from './linear.js';
import { Module } from './module.js';

/** `[rows, cols]` → `[cols, rows]`, element for element (exact for every dtype). */
function transpose(t: Tensor): Tensor {
  const [rows, cols] = t.shape;
  const src = t.data;
  const out = Tensor.zeros([cols, rows], t.dtype);
  const dst = out.data;
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) dst[j * rows + i] = src[i * cols + j];
  return out;
}

/**
 * y = x·W + b   (GPT-2 Conv1D: W is stored [in,out])
 * x [m,k], W [k,n], b [n] → y [m,n] (f32)
 * `weight` keeps the original [k,n] tensor (fuse, unfuse, save); the forward uses `weightT [n,k]`,
 * a transposed copy made once (exact), so the backend sees the same layout as for Linear.
 */
export class Conv1D extends Module implements Projection {
  readonly weight: Tensor;
  readonly weightT: Tensor;
  readonly bias?: Tensor;
  readonly backend: Backend;
  /** `LayerOptions.weightDtype`: the storage asked for W (both the [k,n] original and the [n,k] copy). */
  readonly weightDtype: 'f32' | 'bf16';

  constructor(weight: Tensor, bias?: Tensor, opts: LayerOptions & { weightT?: Tensor } = {}) {
    super();
    if (weight.ndim !== 2) throw new BackendError('shape_mismatch', 'a Conv1D weight is 2-D', { expected: '[k, n]', got: `[${weight.shape.join(', ')}]`, where: 'Conv1D' });
    this.backend = opts.backend ?? defaultBackend();
    this.weightDtype = opts.weightDtype ?? 'f32';
    this.weight = storedWeight(weight, this.weightDtype);
    this.weightT = opts.weightT ?? this.own(transpose(this.weight), (t) => this.backend.upload(t, { keepBf16: this.weightDtype === 'bf16', linearWeight: true }));
    if (bias) this.bias = this.own(bias, (t) => this.backend.upload(t));
  }

  get k(): number {
    return this.weight.shape[0];
  }
  get n(): number {
    return this.weight.shape[1];
  }

  forward(x: Tensor): Tensor {
    return this.project(x, NO_DELTAS);
  }

  project(x: Tensor, deltas: readonly LoRADelta[], rowScale?: Tensor): Tensor {
    return this.backend.linear(x, this.weightT, this.bias, deltas, rowScale);
  }

  projectRouted(x: Tensor, route: Route): Tensor {
    return routed(this.backend, 'Conv1D')(x, this.weightT, this.bias, route);
  }

  denseF64(): Float64Array {
    return toF64(this.weightT);
  }

  /** `dW` is [n,k] like every Projection; it is added to the stored [k,n] weight transposed. */
  merged(dW: Float64Array, db?: Float64Array): Conv1D {
    const { k, n } = this;
    const w = toF64(this.weight);
    for (let j = 0; j < k; j++) for (let i = 0; i < n; i++) w[j * n + i] += dW[i * k + j];
    return new Conv1D(fromF64(w, this.weight.shape, this.weight.dtype), addBias(this.bias, db, n), { backend: this.backend, weightDtype: this.weightDtype });
  }

  withBias(bias: Tensor | undefined): Conv1D {
    return new Conv1D(this.weight, bias, { backend: this.backend, weightDtype: this.weightDtype, weightT: this.weightT });
  }

  /** Frees the tensors this layer uploaded (not ones it was handed resident). Idempotent. */
  dispose(): void {
    this.freeOwned();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  override toString(): string {
    return `Conv1D(k=${this.k}, n=${this.n}${this.bias ? ', bias' : ''})`;
  }
}
