import { ApplyError, BackendError } from '../errors.js';
import type { Backend, LinearWeight, LoRADelta, QuantizedWeight, Route } from '../backends/backend.js';
import { defaultBackend } from '../backends/index.js';
import { Tensor } from '../tensor.js';
import { fromF64, toF64 } from './float.js';
import { Module } from './module.js';

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
    this.weight = this.own(storedWeight(weight, this.weightDtype), (t) => this.backend.upload(t, { keepBf16: this.weightDtype === 'bf16', linearWeight: true }));
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

// ── MLX-quantised projection ─────────────────────────────────────────────────────────────────────
// In this file with Linear because each converts into the other (toQuantized / toLinear): two files would import
// each other.

/** Quantisation options and their defaults (MLX's affine mode), with the values accepted. */
export const QUANTIZE_DEFAULTS = { bits: 4, groupSize: 64 } as const;
export const QUANTIZE_VALUES = { bits: [4, 8], groupSize: [32, 64, 128] } as const;

export interface QuantizeOptions {
  bits?: 4 | 8;
  groupSize?: 32 | 64 | 128 | number;
}

function checkOptions(bits: number, groupSize: number, k: number): void {
  if (!(QUANTIZE_VALUES.bits as readonly number[]).includes(bits))
    throw new ApplyError('bad_option', 'unsupported quantization bits', { expected: QUANTIZE_VALUES.bits, got: bits });
  if (!(QUANTIZE_VALUES.groupSize as readonly number[]).includes(groupSize))
    throw new ApplyError('bad_option', 'unsupported quantization group size', { expected: QUANTIZE_VALUES.groupSize, got: groupSize });
  if (k % groupSize !== 0)
    throw new ApplyError('bad_option', 'in features must be a multiple of the group size', { expected: `k % ${groupSize} = 0`, got: k });
}

/**
 * y = x·Ŵᵀ + b,  Ŵ[i,j] = scales[i,g]·q[i,j] + biases[i,g],  g = ⌊j/groupSize⌋   (MLX affine quantisation)
 * x [m,k], w [n, k·bits/32] u32, scales/biases [n, k/groupSize], b [n] → y [m,n] (f32)
 * Packing: element j of a row sits in word ⌊j/(32/bits)⌋ at bit (j mod (32/bits))·bits, low bits first.
 */
export class QuantizedLinear extends Module implements Projection {
  readonly q: QuantizedWeight;
  readonly bias?: Tensor;
  readonly backend: Backend;

  constructor(
    w: Tensor,
    scales: Tensor,
    biases: Tensor,
    opts: LayerOptions & { bits: 4 | 8; groupSize: number; bias?: Tensor },
  ) {
    super();
    const { bits, groupSize } = opts;
    const n = w.shape[0];
    const k = (w.shape[1] * 32) / bits;
    checkOptions(bits, groupSize, k);
    if (scales.shape[0] !== n || scales.shape[1] !== k / groupSize || biases.shape.join() !== scales.shape.join())
      throw new ApplyError('bad_option', 'quantization scales/biases do not fit the weight', {
        expected: [n, k / groupSize],
        got: { scales: scales.shape, biases: biases.shape },
      });
    this.backend = opts.backend ?? defaultBackend();
    const up = (t: Tensor) => this.own(t, (u) => this.backend.upload(u));
    this.q = { w: up(w), scales: up(scales), biases: up(biases), bits, groupSize, k, n };
    if (opts.bias) this.bias = up(opts.bias);
  }

  get k(): number {
    return this.q.k;
  }
  get n(): number {
    return this.q.n;
  }
  get bits(): 4 | 8 {
    return this.q.bits;
  }
  get groupSize(): number {
    return this.q.groupSize;
  }

  forward(x: Tensor): Tensor {
    return this.project(x, NO_DELTAS);
  }

  project(x: Tensor, deltas: readonly LoRADelta[], rowScale?: Tensor): Tensor {
    return this.backend.quantizedLinear(x, this.q, this.bias, deltas, rowScale);
  }

  projectRouted(x: Tensor, route: Route): Tensor {
    return routed(this.backend, 'QuantizedLinear')(x, this.q, this.bias, route);
  }

  /** Ŵ [n,k] in float64: the one home of the dequantisation formula. */
  denseF64(): Float64Array {
    const { k, n, bits, groupSize } = this.q;
    const words = this.q.w.data as Uint32Array;
    const scales = toF64(this.q.scales);
    const biases = toF64(this.q.biases);
    const perWord = 32 / bits;
    const mask = (1 << bits) - 1;
    const groups = k / groupSize;
    const out = new Float64Array(n * k);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < k; j++) {
        const q = (words[i * (k / perWord) + Math.floor(j / perWord)] >>> ((j % perWord) * bits)) & mask;
        const g = i * groups + Math.floor(j / groupSize);
        out[i * k + j] = scales[g] * q + biases[g];
      }
    }
    return out;
  }

  /** Ŵ [n,k] as a tensor of the scales' dtype (f32 for f32/f64 scales). */
  dequantize(): Tensor {
    const dtype = this.q.scales.dtype === 'f16' || this.q.scales.dtype === 'bf16' ? this.q.scales.dtype : 'f32';
    return fromF64(this.denseF64(), [this.n, this.k], dtype);
  }

  /** The dense layer this one approximates (the inverse of `Linear.toQuantized`). */
  toLinear(): Linear {
    return new Linear(this.dequantize(), this.bias, { backend: this.backend });
  }

  /** `Ŵ + dW`, re-quantised with the same bits and group size, or kept dense with `{dequantize: true}`. */
  merged(dW: Float64Array, db?: Float64Array, opts: { dequantize?: boolean } = {}): Projection {
    const w = this.denseF64();
    for (let i = 0; i < w.length; i++) w[i] += dW[i];
    const dtype = this.q.scales.dtype === 'f16' || this.q.scales.dtype === 'bf16' ? this.q.scales.dtype : 'f32';
    const dense = new Linear(fromF64(w, [this.n, this.k], dtype), addBias(this.bias, db, this.n), { backend: this.backend });
    if (opts.dequantize) return dense;
    const q = QuantizedLinear.fromLinear(dense, { bits: this.bits, groupSize: this.groupSize });
    dense.weight.dispose(); // the dense intermediate's own upload (its bias is shared with the result)
    return q;
  }

  withBias(bias: Tensor | undefined): QuantizedLinear {
    const { w, scales, biases, bits, groupSize } = this.q;
    return new QuantizedLinear(w, scales, biases, { bits, groupSize, bias, backend: this.backend });
  }

  /**
   * MLX affine quantisation of a dense layer, per group of `groupSize` inputs:
   * the edge with the larger magnitude is represented exactly; scale = ±(max−min)/(2^bits−1).
   */
  static fromLinear(linear: Linear, opts: QuantizeOptions = {}): QuantizedLinear {
    const bits = opts.bits ?? QUANTIZE_DEFAULTS.bits;
    const groupSize = opts.groupSize ?? QUANTIZE_DEFAULTS.groupSize;
    const { k, n } = linear;
    checkOptions(bits, groupSize, k);
    const w = linear.denseF64();
    const groups = k / groupSize;
    const nBins = (1 << bits) - 1;
    const perWord = 32 / bits;
    const scales = new Float64Array(n * groups);
    const biases = new Float64Array(n * groups);
    const words = new Uint32Array((n * k) / perWord);
    const sdtype = linear.weight.dtype === 'f16' || linear.weight.dtype === 'bf16' ? linear.weight.dtype : 'f32';
    // Scales and biases are stored in `sdtype`: round them first, then quantise against the stored values.
    const rounded = (v: number) => toF64(fromF64(Float64Array.of(v), [1], sdtype))[0];
    for (let g = 0; g < n * groups; g++) {
      const row = Math.floor(g / groups);
      const start = row * k + (g % groups) * groupSize;
      let lo = Infinity;
      let hi = -Infinity;
      for (let j = 0; j < groupSize; j++) {
        lo = Math.min(lo, w[start + j]);
        hi = Math.max(hi, w[start + j]);
      }
      // Step 1 (MLX affine): a scale covering the range, signed so that the larger-magnitude edge is q = 0.
      const useMin = Math.abs(lo) > Math.abs(hi);
      let scale = Math.max((hi - lo) / nBins, 1e-7) * (useMin ? 1 : -1);
      const edge = useMin ? lo : hi;
      // Step 2: nudge the scale so the edge lands exactly on a grid point.
      const q0 = Math.round(edge / scale);
      if (q0 !== 0) scale = edge / q0;
      const bias = q0 === 0 ? 0 : edge;
      scales[g] = rounded(scale);
      biases[g] = rounded(bias);
      // Step 3: round each weight to the nearest level and pack it, low bits first.
      for (let j = 0; j < groupSize; j++) {
        const q = Math.min(nBins, Math.max(0, Math.round((w[start + j] - biases[g]) / scales[g])));
        const col = (g % groups) * groupSize + j;
        const wi = row * (k / perWord) + Math.floor(col / perWord);
        words[wi] = (words[wi] | (q << ((col % perWord) * bits))) >>> 0;
      }
    }
    return new QuantizedLinear(
      Tensor.from(words, [n, k / perWord], 'u32'),
      fromF64(scales, [n, groups], sdtype),
      fromF64(biases, [n, groups], sdtype),
      { bits, groupSize, bias: linear.bias, backend: linear.backend },
    );
  }

  /** Frees the tensors this layer uploaded (not ones it was handed resident). Idempotent. */
  dispose(): void {
    this.freeOwned();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  override toString(): string {
    return `QuantizedLinear(k=${this.k}, n=${this.n}, bits=${this.bits}, group=${this.groupSize}${this.bias ? ', bias' : ''})`;
  }
}
