import { beforeAll, describe, expect, it } from 'vitest';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, halfToF32Into, toF32Tensor } from '../../src/backends/wasm/convert.js';
import { allocWasmTensor } from '../../src/runtime/storage.js';
import { type WasmRuntime, initWasm } from '../../src/runtime/wasm.js';
import { Tensor } from '../../src/tensor.js';
import { rng } from './helpers.js';

/**
 * f16 / bf16 ⇄ f32 conversions (SIMD128 and scalar twins) against JS references written from the IEEE 754
 * definitions. Widening must be exact (tolerance 0, NaN → NaN with the quiet bit set); narrowing must round
 * to nearest, ties to even (tolerance 0).
 */

// binary16: sign, 5-bit exponent (bias 15), 10-bit fraction; e = 0 subnormal (f·2⁻²⁴), e = 31 inf/NaN.
function f16Value(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 31;
  const f = h & 1023;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}
// bfloat16: sign, 8-bit exponent (bias 127), 7-bit fraction.
function bf16Value(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 7) & 255;
  const f = h & 127;
  if (e === 0) return s * f * 2 ** -133;
  if (e === 255) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 127) * (1 + f / 128);
}

/** Round to nearest, ties to the even pattern, by search over the sorted non-negative finite values. */
function nearestEven(v: number, table: Float64Array, infBits: number, maxFinite: number, halfUlpAtMax: number): number {
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a >= maxFinite + halfUlpAtMax) return sign | infBits; // at or past the midpoint to 2^(emax+1): inf (tie → even = inf)
  let lo = 0;
  let hi = table.length - 1; // table[i] = value of pattern i, increasing
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (table[mid] <= a) lo = mid;
    else hi = mid;
  }
  if (table[lo] === a) return sign | lo;
  const dl = a - table[lo];
  const dh = table[hi] - a;
  if (dl < dh) return sign | lo;
  if (dh < dl) return sign | hi;
  return sign | (lo % 2 === 0 ? lo : hi);
}
const F16_TABLE = Float64Array.from({ length: 0x7c00 }, (_, i) => f16Value(i));
const BF16_TABLE = Float64Array.from({ length: 0x7f80 }, (_, i) => bf16Value(i));
const refToF16 = (v: number) => (Number.isNaN(v) ? -1 : nearestEven(v, F16_TABLE, 0x7c00, 65504, 16));
const refToBf16 = (v: number) => (Number.isNaN(v) ? -1 : nearestEven(v, BF16_TABLE, 0x7f80, bf16Value(0x7f7f), 2 ** (127 - 8)));

const ALL16 = Uint16Array.from({ length: 65536 }, (_, i) => i);
const f32bits = (f: Float32Array) => new Uint32Array(f.buffer, f.byteOffset, f.length);

function edgeValues(): Float32Array {
  const v: number[] = [0, -0, 1, -1, Infinity, -Infinity, NaN, -NaN, 65504, 65505, 65519.99, 65520, 65536, 1e10, -1e10,
    2 ** -14, 2 ** -24, 2 ** -25, 2 ** -25 * 1.0000001, 2 ** -26, 3 * 2 ** -25, 2 ** -24 * 1.5, 2 ** -24 * 2.5, 2 ** -149, 3.4e38, -3.4e38,
    1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -11 + 2 ** -20, 0.1, 1 / 3, Math.PI];
  // Exact midpoints between neighbours (ties) for both formats, and one f32 ulp either side.
  for (let h = 0; h < 0x7bff; h += 97) v.push((f16Value(h) + f16Value(h + 1)) / 2);
  for (let h = 0; h < 0x7f7f; h += 101) v.push((bf16Value(h) + bf16Value(h + 1)) / 2);
  const f = Float32Array.from(v);
  const out = new Float32Array(f.length * 3 * 2);
  const u = f32bits(out);
  const fb = f32bits(f);
  for (let i = 0; i < f.length; i++) {
    for (const [j, d] of [[0, 0], [1, 1], [2, -1]] as const) {
      u[6 * i + 2 * j] = fb[i] + d;
      u[6 * i + 2 * j + 1] = (fb[i] + d) ^ 0x80000000;
    }
  }
  // Signalling and payload NaNs.
  return Float32Array.from([...out, ...new Float32Array(new Uint32Array([0x7f800001, 0xff800001, 0x7fa00000, 0x7fc00001]).buffer)]);
}

let rt: WasmRuntime;
beforeAll(async () => {
  rt = await initWasm();
});

for (const kernels of ['simd128', 'scalar'] as const) {
  describe(`conversions (${kernels})`, () => {
    it('f16 → f32 is exact on all 65,536 patterns; NaN → quiet NaN', () => {
      const got = f16ToF32(ALL16, undefined, kernels);
      const bits = f32bits(got);
      for (let h = 0; h < 65536; h++) {
        const ref = f16Value(h);
        if (Number.isNaN(ref)) {
          if (!Number.isNaN(got[h]) || !(bits[h] & 0x00400000)) throw new Error(`f16 0x${h.toString(16)}: expected quiet NaN, got bits 0x${bits[h].toString(16)}`);
          expect(bits[h] >>> 31).toBe(h >> 15);
        } else if (!Object.is(got[h], ref)) throw new Error(`f16 0x${h.toString(16)}: ref ${ref}, got ${got[h]}`);
      }
    });

    it('bf16 → f32 is exact on all 65,536 patterns; NaN → quiet NaN', () => {
      const got = bf16ToF32(ALL16, undefined, kernels);
      const bits = f32bits(got);
      for (let h = 0; h < 65536; h++) {
        const ref = bf16Value(h);
        if (Number.isNaN(ref)) {
          if (!Number.isNaN(got[h]) || !(bits[h] & 0x00400000)) throw new Error(`bf16 0x${h.toString(16)}: expected quiet NaN, got 0x${bits[h].toString(16)}`);
        } else if (!Object.is(got[h], ref)) throw new Error(`bf16 0x${h.toString(16)}: ref ${ref}, got ${got[h]}`);
      }
    });

    const narrowCases = [
      ['f16', f32ToF16, refToF16, f16Value, 0x7c00] as const,
      ['bf16', f32ToBf16, refToBf16, bf16Value, 0x7f80] as const,
    ];
    for (const [name, conv, ref, value, expMask] of narrowCases) {
      it(`f32 → ${name} rounds to nearest even: ties, subnormals, overflow, NaN, random`, () => {
        const rand = rng(5);
        const randoms = new Float32Array(20000);
        const ru = f32bits(randoms);
        for (let i = 0; i < ru.length; i++) ru[i] = Math.floor(rand() * 2 ** 32);
        const input = Float32Array.from([...edgeValues(), ...randoms]);
        const got = conv(input, undefined, kernels);
        for (let i = 0; i < input.length; i++) {
          const want = ref(input[i]);
          if (want < 0) {
            // NaN: stays NaN, quiet, sign kept.
            const ok = (got[i] & expMask) === expMask && (got[i] & ~(expMask | 0x8000)) !== 0 && Number.isNaN(value(got[i]));
            if (!ok) throw new Error(`${name}(${input[i]}) index ${i}: expected NaN, got 0x${got[i].toString(16)}`);
          } else if (got[i] !== want) {
            throw new Error(`${name}(${input[i]}) index ${i} bits 0x${f32bits(input.subarray(i, i + 1))[0].toString(16)}: ref 0x${want.toString(16)}, got 0x${got[i].toString(16)}`);
          }
        }
      });

      it(`${name} → f32 → ${name} round-trips every non-NaN pattern`, () => {
        const widen = name === 'f16' ? f16ToF32 : bf16ToF32;
        const back = conv(widen(ALL16, undefined, kernels), undefined, kernels);
        for (let h = 0; h < 65536; h++) {
          if (Number.isNaN(value(h))) continue;
          if (back[h] !== h) throw new Error(`${name} 0x${h.toString(16)} → 0x${back[h].toString(16)}`);
        }
      });
    }
  });
}

describe('conversions into wasm memory', () => {
  it('halfToF32Into writes straight into a wasm tensor at an offset; toF32Tensor widens cpu and wasm tensors', () => {
    const dst = allocWasmTensor(rt, [10], 'f32');
    dst.data.fill(-7);
    const src = Uint16Array.from([0x3c00, 0xc000, 0x7c00, 0x0001]); // 1, -2, inf, 2^-24
    halfToF32Into('f16', src, dst, 3);
    expect(Array.from(dst.data)).toEqual([-7, -7, -7, 1, -2, Infinity, 2 ** -24, -7, -7, -7]);
    const bf = Tensor.from(Uint16Array.from([0x3f80, 0x4040]), [2], 'bf16');
    const t1 = toF32Tensor(bf);
    expect(t1.device).toBe('wasm');
    expect(Array.from(t1.data)).toEqual([1, 3]);
    const inWasm = toF32Tensor(toF32Tensor(Tensor.f32([0.5, 4], [2])));
    expect(Array.from(inWasm.data)).toEqual([0.5, 4]);
    for (const t of [dst, t1, inWasm]) t.dispose();
  });

  it('converts more than one staging chunk and reports throughput', () => {
    const n = (1 << 20) * 3 + 5;
    const src = new Uint16Array(n);
    for (let i = 0; i < n; i++) src[i] = (i * 2654435761) & 0x7bff;
    const t0 = performance.now();
    const out = f16ToF32(src);
    const ms = performance.now() - t0;
    for (const i of [0, 1, 1 << 20, (1 << 20) + 1, n - 1]) expect(out[i]).toBe(f16Value(src[i]));
    console.log(`f16→f32: ${((n * 2) / ms / 1e6).toFixed(2)} GB/s of input (${n} elements, ${ms.toFixed(1)} ms)`);
  });
});
