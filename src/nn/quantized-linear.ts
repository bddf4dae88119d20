import type { Backend, LoRADelta, QuantizedWeight, Route } from '../backends/backend.js';
import { defaultBackend } from '../backends/index.js';
import { ApplyError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { fromF64, toF64 } from './float.js';
import { addBias, Linear, NO_DELTAS, routed, type LayerOptions, type Projection } from './linear.js';
import { Module } from './module.js';

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
