import { BackendError } from './errors.js';
import type { Tensor } from './tensor.js';

/**
 * Scalar float16 / bfloat16 ⇄ number, exact and round-to-nearest-even, for host-side code (the float64
 * reference backend, fuse, DoRA's norm, quantisation). Bulk conversions go through the wasm kernels
 * (cpp/convert.h); tests check those against an independent decoder of their own.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE half → number. */
export function f16ToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** number → IEEE half, round to nearest even. */
export function numberToF16(v: number): number {
  if (Number.isNaN(v)) return 0x7e00;
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  let a = Math.abs(v);
  if (a >= 65520) return sign | 0x7c00; // rounds past the largest half (65504)
  if (a < 2 ** -14) return sign | Math.round(a * 2 ** 24); // subnormal; Math.round ties up, fixed below
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  if (2 ** (e + 1) <= a) e++;
  const mant = a / 2 ** e - 1; // [0,1)
  let m = mant * 1024;
  const fl = Math.floor(m);
  const frac = m - fl;
  m = frac > 0.5 || (frac === 0.5 && fl % 2 === 1) ? fl + 1 : fl;
  a = (e + 15) * 1024 + m; // a carry from m = 1024 bumps the exponent, as it should
  return sign | a;
}

/** number → bf16 bits, via f32 then round to nearest even on the low 16 bits. */
export function numberToBf16(v: number): number {
  f32[0] = v;
  const x = u32[0];
  if (Number.isNaN(f32[0])) return 0x7fc0;
  return ((x + 0x7fff + ((x >> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16ToNumber(h: number): number {
  u32[0] = h << 16;
  return f32[0];
}

/** The values of a float tensor (f64/f32/f16/bf16, on cpu or wasm) as float64. */
export function toF64(t: Tensor): Float64Array {
  const d = t.data;
  if (t.dtype === 'f16') return Float64Array.from(d as Uint16Array, f16ToNumber);
  if (t.dtype === 'bf16') return Float64Array.from(d as Uint16Array, bf16ToNumber);
  if (t.dtype === 'f32' || t.dtype === 'f64') return Float64Array.from(d as Float32Array);
  throw new BackendError('dtype_unsupported', 'not a float dtype', { expected: 'f64, f32, f16 or bf16', got: t.dtype, where: `toF64 › ${t}` });
}

