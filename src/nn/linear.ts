import { BackendError } from '../errors.js';
import type { Backend, LoRADelta } from '../backends/backend.js';
import { defaultBackend } from '../backends/index.js';
import type { Tensor } from '../tensor.js';
import { fromF64, toF64 } from './float.js';
import { Module } from './module.js';
import { QuantizedLinear, type QuantizeOptions } from './quantized-linear.js';

/** The one empty delta list: "adapter off" passes exactly this, so the backend runs the base computation. */
export const NO_DELTAS: readonly LoRADelta[] = Object.freeze([]);

export interface LayerOptions {
  /** Where the weights live and the forward runs; default `defaultBackend()`. */
  backend?: Backend;
}

/**
 * A layer computing `x [m,k] → y [m,n]` with one backend call, which LoRA layers reuse with their deltas:
 * `project(x, [])` is the layer's own forward, bit for bit. Implemented by Linear, Conv1D and QuantizedLinear.
 */
export interface Projection extends Module {
  readonly k: number;
  readonly n: number;
  readonly bias?: Tensor;
  readonly backend: Backend;
  forward(x: Tensor): Tensor;
  /** `rowScale ⊙ (x·Wᵀ + Σ s·(x·A)·B) + bias`, one backend call. */
  project(x: Tensor, deltas: readonly LoRADelta[], rowScale?: Tensor): Tensor;
  /** W as float64 in nn.Linear orientation `[n,k]` (dequantised if need be). */
  denseF64(): Float64Array;
  /** A new layer of the same kind with `W + dW` and `b + db` (`dW [n,k]` float64), rounded once to W's dtype. */
  merged(dW: Float64Array, db?: Float64Array, opts?: { dequantize?: boolean }): Projection;
  /** The same weights with another bias (no copy). */
  withBias(bias: Tensor | undefined): Projection;
}

/** `b + db` in float64, rounded once; `db` alone when the layer had no bias. */
export function addBias(bias: Tensor | undefined, db: Float64Array | undefined, n: number): Tensor | undefined {
  if (!db) return bias;
  const sum = bias ? toF64(bias) : new Float64Array(n);
  for (let i = 0; i < n; i++) sum[i] += db[i];
  return fromF64(sum, [n], bias?.dtype ?? 'f32');
}

/**
 * y = x·Wᵀ + b
 * x [m,k], W [n,k], b [n] → y [m,n] (f32)
 * Weights are uploaded to `backend` once, here.
 */
export class Linear extends Module implements Projection {
  readonly weight: Tensor;
  readonly bias?: Tensor;
  readonly backend: Backend;

  constructor(weight: Tensor, bias?: Tensor, opts: LayerOptions = {}) {
    super();
    if (weight.ndim !== 2) throw new BackendError('shape_mismatch', 'a Linear weight is 2-D', { expected: '[n, k]', got: `[${weight.shape.join(', ')}]`, where: 'Linear' });
    this.backend = opts.backend ?? defaultBackend();
    this.weight = this.backend.upload(weight);
    if (bias) this.bias = this.backend.upload(bias);
  }

  get n(): number {
    return this.weight.shape[0];
  }
  get k(): number {
    return this.weight.shape[1];
  }

  forward(x: Tensor): Tensor {
    return this.project(x, NO_DELTAS);
  }

  project(x: Tensor, deltas: readonly LoRADelta[], rowScale?: Tensor): Tensor {
    return this.backend.linear(x, this.weight, this.bias, deltas, rowScale);
  }

  denseF64(): Float64Array {
    return toF64(this.weight);
  }

  merged(dW: Float64Array, db?: Float64Array): Linear {
    const w = this.denseF64();
    for (let i = 0; i < w.length; i++) w[i] += dW[i];
    return new Linear(fromF64(w, this.weight.shape, this.weight.dtype), addBias(this.bias, db, this.n), { backend: this.backend });
  }

  withBias(bias: Tensor | undefined): Linear {
    return new Linear(this.weight, bias, { backend: this.backend });
  }

  /** MLX affine quantisation of this layer (the inverse of `QuantizedLinear.toLinear`). */
  toQuantized(opts: QuantizeOptions = {}): QuantizedLinear {
    return QuantizedLinear.fromLinear(this, opts);
  }

  override toString(): string {
    return `Linear(k=${this.k}, n=${this.n}${this.bias ? ', bias' : ''})`;
  }
}
