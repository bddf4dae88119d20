// Float64 references for the transformer ops of `Backend` (the contract in src/backends/backend.ts written out,
// independent of src/backends/cpu-ops.ts), and the random inputs and comparison the GPU tests use. Shared by
// test/gpu/transformer.test.ts (vitest, Dawn) and test/deno/webgpu.deno.ts (Deno, wgpu); no test-runner imports.
import { Tensor } from '../../src/tensor.js';

export function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
}
export function rand(shape: number[], seed: number, amp = 1, offset = 0): Tensor<'f32'> {
  const r = rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return Tensor.f32(Array.from({ length: n }, () => offset + r() * amp), shape);
}
export const f64 = (t: Tensor) => Float64Array.from(t.data as Float32Array);
/** The f32 bit patterns of a read-back f32 tensor. */
export const bits = (a: { buffer: ArrayBufferLike; byteOffset: number; length: number }) => new Uint32Array(a.buffer, a.byteOffset, a.length);

/** Undefined when every |got − ref| ≤ tol·max(1, |ref|); otherwise the first offender and the worst error. */
export function close(got: ArrayLike<number>, ref: ArrayLike<number>, tol: number): string | undefined {
  if (got.length !== ref.length) return `length ${got.length} ≠ ${ref.length}`;
  let worst = 0, first = -1;
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs(got[i] - ref[i]) / Math.max(1, Math.abs(ref[i]));
    if (!(e <= tol) && first < 0) first = i;
    if (!(e <= worst)) worst = e;
  }
  return first < 0 ? undefined : `index ${first}: ref ${ref[first]}, got ${got[first]}; worst relative error ${worst} > ${tol}`;
}

export function refNorm(x: Float64Array, w: Float64Array, b: Float64Array | undefined, eps: number): Float64Array {
  const d = w.length, m = x.length / d, y = new Float64Array(x.length);
  for (let i = 0; i < m; i++) {
    const row = x.subarray(i * d, (i + 1) * d);
    const mu = b ? row.reduce((s, v) => s + v, 0) / d : 0;
    const ms = row.reduce((s, v) => s + (v - mu) ** 2, 0) / d;
    for (let j = 0; j < d; j++) y[i * d + j] = ((row[j] - mu) / Math.sqrt(ms + eps)) * w[j] + (b ? b[j] : 0);
  }
  return y;
}

/** HF rotary tables: cos/sin[p, j] of p·θ^(−2j/hd), [maxPos, hd/2]. */
export function ropeTables(maxPos: number, hd: number, theta = 10000): { cos: Tensor<'f32'>; sin: Tensor<'f32'> } {
  const half = hd / 2, c: number[] = [], s: number[] = [];
  for (let p = 0; p < maxPos; p++) {
    for (let j = 0; j < half; j++) {
      const a = p * theta ** ((-2 * j) / hd);
      c.push(Math.cos(a));
      s.push(Math.sin(a));
    }
  }
  return { cos: Tensor.f32(c, [maxPos, half]), sin: Tensor.f32(s, [maxPos, half]) };
}

export function refRope(x: Float64Array, cos: Float64Array, sin: Float64Array, heads: number, hd: number, start: number): Float64Array {
  const half = hd / 2, width = heads * hd, y = Float64Array.from(x);
  for (let i = 0; i < x.length / width; i++) {
    for (let h = 0; h < heads; h++) {
      for (let j = 0; j < half; j++) {
        const o = i * width + h * hd + j, c = cos[(start + i) * half + j], s = sin[(start + i) * half + j];
        y[o] = x[o] * c - x[o + half] * s;
        y[o + half] = x[o + half] * c + x[o] * s;
      }
    }
  }
  return y;
}

export const refSilu = (g: number) => g / (1 + Math.exp(-g));
export const refGelu = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

export function refAttention(q: Float64Array, k: Float64Array, v: Float64Array, start: number, heads: number, kvHeads: number, hd: number, maxLen: number, scale: number): Float64Array {
  const width = heads * hd, m = q.length / width, out = new Float64Array(q.length);
  for (let i = 0; i < m; i++) {
    const p = start + i;
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / (heads / kvHeads));
      const scores = Array.from({ length: p + 1 }, (_, j) => {
        let s = 0;
        for (let t = 0; t < hd; t++) s += q[i * width + h * hd + t] * k[(g * maxLen + j) * hd + t];
        return s * scale;
      });
      const mx = Math.max(...scores);
      const e = scores.map((s) => Math.exp(s - mx));
      const sum = e.reduce((a, b) => a + b, 0);
      for (let t = 0; t < hd; t++) {
        let acc = 0;
        for (let j = 0; j <= p; j++) acc += e[j] * v[(g * maxLen + j) * hd + t];
        out[i * width + h * hd + t] = acc / sum;
      }
    }
  }
  return out;
}
