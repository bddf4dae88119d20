import { BackendError } from '../errors.js';
import type { Backend, LinearWeight, LoRADelta, Route } from '../backends/backend.js';
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
  /**
   * How Linear, Conv1D and Embedding store W. `'f32'` (default): widened to f32 on upload. `'bf16'`: kept as bf16, half the
   * memory and half the bytes a decode step streams (a bf16 checkpoint is kept exactly; another dtype is rounded
   * to nearest even once). Every backend computes on the bf16 directly (wasm, WebGPU, js).
   * Fusing into a bf16 W rounds `W + ΔW` to bf16, as PEFT's merge does on a bf16 model.
   */
  weightDtype?: 'f32' | 'bf16';
}

/** `weight` as the layer stores it: bf16 when asked (rounded once to nearest even unless it is bf16 already). */
export function storedWeight(weight: Tensor, weightDtype: LayerOptions['weightDtype']): Tensor {
  if (weightDtype !== undefined && weightDtype !== 'f32' && weightDtype !== 'bf16') {
    throw new BackendError('dtype_unsupported', 'unsupported weightDtype', { expected: "'f32' or 'bf16'", got: weightDtype, where: 'LayerOptions.weightDtype' });
  }
  if (!['f64', 'f32', 'f16', 'bf16'].includes(weight.dtype)) {
    if (weightDtype === 'bf16') throw new BackendError('dtype_unsupported', 'only a float weight can be stored as bf16', { expected: 'f64, f32, f16 or bf16', got: weight.dtype, where: 'LayerOptions.weightDtype' });
    return weight;
  }
  if (weightDtype !== 'bf16' || weight.dtype === 'bf16') return weight;
  return fromF64(toF64(weight), weight.shape, 'bf16');
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
  /** The same with a per-row route (`Backend.linearRouted`): the base product once, adapters per row. */
  projectRouted(x: Tensor, route: Route): Tensor;
  /** W as float64 in nn.Linear orientation `[n,k]` (dequantised if need be). */
  denseF64(): Float64Array;
  /** A new layer of the same kind with `W + dW` and `b + db` (`dW [n,k]` float64), rounded once to W's dtype. */
  merged(dW: Float64Array, db?: Float64Array, opts?: { dequantize?: boolean }): Projection;
  /** The same weights with another bias (no copy). */
  withBias(bias: Tensor | undefined): Projection;
}

/** The backend's routed linear, or a typed error when the backend has none (a custom Backend). */
export function routed(backend: Backend, where: string): (x: Tensor, w: LinearWeight, bias: Tensor | undefined, route: Route) => Tensor {
  const f = backend.linearRouted;
  if (!f) throw new BackendError('dtype_unsupported', 'this backend has no routed linear (per-row adapters)', { expected: 'Backend.linearRouted', got: backend.name, where });
  return f.bind(backend);
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
  /** The storage asked for W (`LayerOptions.weightDtype`); `weight.dtype` says what the backend kept. */
  readonly weightDtype: 'f32' | 'bf16';

  constructor(weight: Tensor, bias?: Tensor, opts: LayerOptions = {}) {
    super();
    if (weight.ndim !== 2) throw new BackendError('shape_mismatch', 'a Linear weight is 2-D', { expected: '[n, k]', got: `[${weight.shape.join(', ')}]`, where: 'Linear' });
    this.backend = opts.backend ?? defaultBackend();
    this.weightDtype = opts.weightDtype ?? 'f32';
    this.weight = this.own(storedWeight(weight, this.weightDtype), (t) => this.backend.upload(t, { keepBf16: this.weightDtype === 'bf16' }));
    if (bias) this.bias = this.own(bias, (t) => this.backend.upload(t));
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

  projectRouted(x: Tensor, route: Route): Tensor {
    return routed(this.backend, 'Linear')(x, this.weight, this.bias, route);
  }

  denseF64(): Float64Array {
    return toF64(this.weight);
  }

  merged(dW: Float64Array, db?: Float64Array): Linear {
    const w = this.denseF64();
    for (let i = 0; i < w.length; i++) w[i] += dW[i];
    return new Linear(fromF64(w, this.weight.shape, this.weight.dtype), addBias(this.bias, db, this.n), this.layerOptions);
  }

  withBias(bias: Tensor | undefined): Linear {
    return new Linear(this.weight, bias, this.layerOptions);
  }

  private get layerOptions(): LayerOptions {
    return { backend: this.backend, weightDtype: this.weightDtype };
  }

  /** MLX affine quantisation of this layer (the inverse of `QuantizedLinear.toLinear`). */
  toQuantized(opts: QuantizeOptions = {}): QuantizedLinear {
    return QuantizedLinear.fromLinear(this, opts);
  }

  /** Frees the tensors this layer uploaded (not ones it was handed resident). Idempotent. */
  dispose(): void {
    this.freeOwned();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  override toString(): string {
    return `Linear(k=${this.k}, n=${this.n}${this.bias ? ', bias' : ''}${this.weight.dtype === 'bf16' ? ', bf16' : ''})`;
  }
}
