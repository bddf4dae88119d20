import { beforeAll, describe, expect, it } from 'vitest';
import { WasmBackend } from '../../src/backends/wasm.js';
import { BackendError } from '../../src/errors.js';
import { Tensor } from '../../src/tensor.js';
import { expectClose, randomF32, rng } from './helpers.js';

/**
 * The transformer ops of the wasm backend (cpp/transformer.h, cpp/attention.h), SIMD128 and scalar twins, against
 * float64 references written here from the formulas of backend.ts. Tolerances (u = 2⁻²⁴, the f32 unit roundoff):
 *   rmsNorm     |got − ref| ≤ 3u·|ref|                          (1/√ in f64 rounded once, then two f32 products)
 *   layerNorm   ≤ 4u·((|x − μ| + |μ|)·inv·|w| + |b|)            (x − μ taken in f32 against the rounded mean)
 *   rope        ≤ 3u·(|x₁·c| + |x₂·s|)                          (two products and a sum in f32)
 *   addInPlace  exact: fround(a + b)
 *   swiglu      ≤ 6u·|ref|                                      (exp ≤ 1 ulp, then +, ÷, ×)
 *   geluTanh    ≤ (8 + 6·|2t|)·u·|ref|, t = √(2/π)(x + 0.044715x³) (t's ~5u is scaled by |2t| through exp)
 *   attention   ≤ 1e-5 absolute, |v| ≤ 1                        (measured ≤ 1.8e-7)
 * every one plus 1e-37 absolute (results flushed below the smallest normal). Batch invariance is bit for bit.
 */

const U = 2 ** -24;
const TINY = 1e-37;
const KERNELS = ['simd128', 'scalar'] as const;

const f32 = (a: ArrayLike<number>) => Float32Array.from(a);
const bytesOf = (t: Tensor) => Buffer.from(t.storage.bytes());

function cpuT(data: Float32Array<ArrayBuffer>, shape: number[]): Tensor {
  return Tensor.from(data, shape, 'f32');
}

function read(t: Tensor): Float32Array {
  const out = Float32Array.from(t.data as Float32Array);
  return out;
}

// ---- float64 references ------------------------------------------------------------------------------------

function refRmsNorm(x: Float32Array, w: Float32Array, m: number, d: number, eps: number): Float64Array {
  const y = new Float64Array(m * d);
  for (let i = 0; i < m; i++) {
    let ss = 0;
    for (let j = 0; j < d; j++) ss += x[i * d + j] ** 2;
    const inv = 1 / Math.sqrt(ss / d + eps);
    for (let j = 0; j < d; j++) y[i * d + j] = x[i * d + j] * inv * w[j];
  }
  return y;
}

/** y and the tolerance scale (|x − μ| + |μ|)·inv·|w| + |b|. */
function refLayerNorm(x: Float32Array, w: Float32Array, b: Float32Array, m: number, d: number, eps: number): { y: Float64Array; mag: Float64Array } {
  const y = new Float64Array(m * d);
  const mag = new Float64Array(m * d);
  for (let i = 0; i < m; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += x[i * d + j];
    const mu = s / d;
    let v = 0;
    for (let j = 0; j < d; j++) v += (x[i * d + j] - mu) ** 2;
    const inv = 1 / Math.sqrt(v / d + eps);
    for (let j = 0; j < d; j++) {
      y[i * d + j] = (x[i * d + j] - mu) * inv * w[j] + b[j];
      mag[i * d + j] = (Math.abs(x[i * d + j] - mu) + Math.abs(mu)) * inv * Math.abs(w[j]) + Math.abs(b[j]);
    }
  }
  return { y, mag };
}

function refRope(x: Float32Array, cos: Float32Array, sin: Float32Array, m: number, heads: number, hd: number, start: number): { y: Float64Array; mag: Float64Array } {
  const half = hd / 2;
  const y = new Float64Array(x.length);
  const mag = new Float64Array(x.length);
  for (let i = 0; i < m; i++)
    for (let h = 0; h < heads; h++)
      for (let j = 0; j < half; j++) {
        const o = (i * heads + h) * hd + j;
        const [x1, x2] = [x[o], x[o + half]];
        const [c, s] = [cos[(start + i) * half + j], sin[(start + i) * half + j]];
        y[o] = x1 * c - x2 * s;
        y[o + half] = x2 * c + x1 * s;
        mag[o] = Math.abs(x1 * c) + Math.abs(x2 * s);
        mag[o + half] = Math.abs(x2 * c) + Math.abs(x1 * s);
      }
  return { y, mag };
}

const GELU_C = Math.sqrt(2 / Math.PI);
const geluT = (x: number) => GELU_C * (x + 0.044715 * x * x * x);
/** gelu_new = ½x(1 + tanh t); evaluated as x / (1 + e^(−2t)) (the same function), which float64 keeps accurate where 1 + tanh t cancels. */
const refGelu = (x: number) => x / (1 + Math.exp(-2 * geluT(x)));
const refSilu = (g: number) => g / (1 + Math.exp(-g));

/** q [m, heads·hd], caches [kvHeads, maxLen, hd] → [m, heads·hd], straight from the formula of backend.ts. */
function refAttention(q: Float32Array, k: Float32Array, v: Float32Array, m: number, heads: number, kvHeads: number, hd: number, maxLen: number, start: number, scale: number): Float64Array {
  const y = new Float64Array(m * heads * hd);
  const group = heads / kvHeads;
  for (let i = 0; i < m; i++) {
    const p = start + i;
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / group);
      const s: number[] = [];
      for (let j = 0; j <= p; j++) {
        let dot = 0;
        for (let t = 0; t < hd; t++) dot += q[(i * heads + h) * hd + t] * k[(g * maxLen + j) * hd + t];
        s.push(scale * dot);
      }
      const mx = Math.max(...s);
      const e = s.map((x) => Math.exp(x - mx));
      const sum = e.reduce((a, b) => a + b, 0);
      for (let t = 0; t < hd; t++) {
        let acc = 0;
        for (let j = 0; j <= p; j++) acc += e[j] * v[(g * maxLen + j) * hd + t];
        y[(i * heads + h) * hd + t] = acc / sum;
      }
    }
  }
  return y;
}

// ---- tests -------------------------------------------------------------------------------------------------

const backends: Partial<Record<(typeof KERNELS)[number], WasmBackend>> = {};
beforeAll(async () => {
  for (const k of KERNELS) backends[k] = await WasmBackend.create({ kernels: k });
});
const be = (k: (typeof KERNELS)[number]) => backends[k] as WasmBackend;

for (const kernels of KERNELS) {
  describe(`transformer ops (wasm ${kernels}) vs float64`, () => {
    for (const d of [1, 3, 7, 256, 257, 1023])
      for (const m of [1, 3, 17])
        it(`rmsNorm m=${m} d=${d}`, () => {
          const rand = rng(d * 31 + m);
          const x = randomF32(rand, m * d).map((v) => v * 4);
          const w = randomF32(rand, d);
          const eps = 1e-6;
          const b = be(kernels);
          const wt = b.upload(cpuT(w, [d]));
          const xt = b.upload(cpuT(x, [m, d]));
          const y = b.rmsNorm(xt, wt, eps);
          expect(y.shape).toEqual([m, d]);
          const ref = refRmsNorm(x, w, m, d, eps);
          expectClose(read(y), ref, (i) => 3 * U * Math.abs(ref[i]) + TINY, `rmsNorm [${m},${d}]`);
          for (const t of [y, wt, xt]) t.dispose();
        });

    for (const d of [1, 3, 7, 256, 257, 1023])
      for (const m of [1, 3, 17])
        it(`layerNorm m=${m} d=${d}`, () => {
          const rand = rng(d * 37 + m);
          // An offset mean: the two-pass variance must not cancel.
          const x = randomF32(rand, m * d).map((v) => 3 + v);
          const w = randomF32(rand, d);
          const bias = randomF32(rand, d);
          const eps = 1e-5;
          const b = be(kernels);
          const y = b.layerNorm(b.upload(cpuT(x, [m, d])), b.upload(cpuT(w, [d])), b.upload(cpuT(bias, [d])), eps);
          const { y: ref, mag } = refLayerNorm(x, w, bias, m, d, eps);
          expectClose(read(y), ref, (i) => 4 * U * mag[i] + TINY, `layerNorm [${m},${d}]`);
          y.dispose();
        });

    for (const hd of [16, 32, 64, 6, 10])
      for (const [m, start] of [[1, 0], [3, 5], [17, 100]] as const)
        it(`rope hd=${hd} m=${m} start=${start}`, () => {
          const heads = 3;
          const half = hd / 2;
          const maxPos = start + m + 2;
          const rand = rng(hd * 1000 + m * 10 + start);
          const x = randomF32(rand, m * heads * hd).map((v) => v * 3);
          // Tables as a model builds them: θ_j = 10000^(−2j/hd), cos/sin(p·θ_j) rounded to f32.
          const cos = new Float32Array(maxPos * half);
          const sin = new Float32Array(maxPos * half);
          for (let p = 0; p < maxPos; p++)
            for (let j = 0; j < half; j++) {
              const a = p * 10000 ** (-(2 * j) / hd);
              cos[p * half + j] = Math.cos(a);
              sin[p * half + j] = Math.sin(a);
            }
          const b = be(kernels);
          const xt = b.upload(cpuT(x, [m, heads * hd]));
          b.rope(xt, b.upload(cpuT(cos, [maxPos, half])), b.upload(cpuT(sin, [maxPos, half])), heads, hd, start);
          const { y: ref, mag } = refRope(x, cos, sin, m, heads, hd, start);
          expectClose(read(xt), ref, (i) => 3 * U * mag[i] + TINY, `rope [${m},${heads}·${hd}] start ${start}`);
          xt.dispose();
        });

    it('addInPlace is the correctly rounded f32 sum, any length', () => {
      for (const n of [1, 3, 4, 5, 256, 1027]) {
        const rand = rng(n);
        const a = randomF32(rand, n);
        const bb = randomF32(rand, n).map((v) => v * 1e3);
        const b = be(kernels);
        const at = b.upload(cpuT(a, [n]));
        b.addInPlace(at, b.upload(cpuT(bb, [n])));
        expect(Array.from(read(at))).toEqual(Array.from(a, (v, i) => Math.fround(v + bb[i])));
        at.dispose();
      }
    });

    const EDGES = [0, -0, 1e-30, -1e-30, 0.5, -0.5, 3, -3, 6.5, -6.5, 10, -10, 20, -20, 50, -50, 87, -87, 88.5, -88.5, 100, -100, 1e10, -1e10];
    for (const n of [1, 3, 5, 703, 2113])
      it(`swiglu and geluTanh n=${n} (+ edge values)`, () => {
        const rand = rng(n + 7);
        const g = f32([...Array.from(randomF32(rand, n), (v) => v * 8), ...EDGES]);
        const u = f32([...randomF32(rand, n), ...EDGES.map(() => 1.5)]);
        const N = g.length;
        const b = be(kernels);
        const y = b.swiglu(b.upload(cpuT(g, [N])), b.upload(cpuT(u, [N])));
        const sref = Float64Array.from(g, (v, i) => refSilu(v) * u[i]);
        expectClose(read(y), sref, (i) => 6 * U * Math.abs(sref[i]) + TINY, `swiglu n=${N}`);
        const z = b.geluTanh(b.upload(cpuT(g, [N])));
        const gref = Float64Array.from(g, refGelu);
        expectClose(read(z), gref, (i) => (8 + 6 * Math.abs(2 * geluT(g[i]))) * U * Math.abs(gref[i]) + TINY, `geluTanh n=${N}`);
        for (const t of [y, z]) t.dispose();
      });

    it('kvWrite writes exactly rows start … start + m − 1 of each KV head', () => {
      for (const [kvHeads, hd, m, start] of [[2, 16, 1, 0], [4, 32, 3, 7], [1, 6, 17, 2]] as const) {
        const maxLen = start + m + 4;
        const rand = rng(kvHeads * hd + m);
        const cache0 = randomF32(rand, kvHeads * maxLen * hd);
        const src = randomF32(rand, m * kvHeads * hd);
        const b = be(kernels);
        const cache = b.upload(cpuT(cache0, [kvHeads, maxLen, hd]));
        b.kvWrite(cache, b.upload(cpuT(src, [m, kvHeads * hd])), start, kvHeads, hd);
        const want = Float32Array.from(cache0);
        for (let i = 0; i < m; i++)
          for (let g = 0; g < kvHeads; g++)
            for (let t = 0; t < hd; t++) want[(g * maxLen + start + i) * hd + t] = src[(i * kvHeads + g) * hd + t];
        expect(Buffer.from(read(cache).buffer).equals(Buffer.from(want.buffer))).toBe(true);
        cache.dispose();
      }
    });

    for (const [heads, kvHeads, hd] of [[8, 2, 16], [4, 4, 32], [8, 4, 64], [8, 4, 32], [6, 2, 10], [2, 1, 128]] as const)
      for (const [m, start] of [[1, 0], [1, 37], [3, 0], [3, 4], [17, 0], [17, 9]] as const)
        it(`attention heads=${heads}/${kvHeads} hd=${hd} m=${m} start=${start}`, () => {
          const maxLen = start + m + 3;
          const rand = rng(heads * 7919 + hd * 31 + m * 7 + start);
          const q = randomF32(rand, m * heads * hd).map((v) => v * 2);
          const k = randomF32(rand, kvHeads * maxLen * hd);
          const v = randomF32(rand, kvHeads * maxLen * hd);
          // Positions past start + m − 1 hold NaN: a causal kernel never reads them.
          for (let g = 0; g < kvHeads; g++)
            for (let j = start + m; j < maxLen; j++)
              for (let t = 0; t < hd; t++) k[(g * maxLen + j) * hd + t] = v[(g * maxLen + j) * hd + t] = Number.NaN;
          const scale = 1 / Math.sqrt(hd);
          const b = be(kernels);
          const kt = b.upload(cpuT(k, [kvHeads, maxLen, hd]));
          const vt = b.upload(cpuT(v, [kvHeads, maxLen, hd]));
          const y = b.attention(b.upload(cpuT(q, [m, heads * hd])), kt, vt, start, { heads, kvHeads, headDim: hd }, scale);
          expect(y.shape).toEqual([m, heads * hd]);
          const ref = refAttention(q, k, v, m, heads, kvHeads, hd, maxLen, start, Math.fround(scale));
          expectClose(read(y), ref, () => 1e-5, `attention ${heads}/${kvHeads}×${hd} m=${m} start=${start}`);
          for (const t of [y, kt, vt]) t.dispose();
        });

    it('attention: sharp scores (max subtracted) stay finite and exact at the argmax', () => {
      const [heads, kvHeads, hd, n] = [2, 1, 32, 40];
      const rand = rng(99);
      const k = randomF32(rand, n * hd).map((x) => x * 30);
      const v = randomF32(rand, n * hd);
      const q = randomF32(rand, heads * hd).map((x) => x * 30);
      const b = be(kernels);
      const y = b.attention(cpuT(q, [1, heads * hd]), cpuT(k, [1, n, hd]), cpuT(v, [1, n, hd]), n - 1, { heads, kvHeads, headDim: hd }, 1);
      const ref = refAttention(q, k, v, 1, heads, kvHeads, hd, n, n - 1, 1);
      expectClose(read(y), ref, () => 1e-5, 'sharp attention');
      y.dispose();
    });
  });
}

describe('batch invariance: attention rows with m = 5 equal the same rows one at a time, bit for bit', () => {
  for (const kernels of KERNELS)
    for (const [heads, kvHeads, hd, start] of [[8, 4, 32, 0], [8, 2, 16, 11], [4, 4, 64, 3], [6, 2, 10, 6]] as const)
      it(`${kernels} heads=${heads}/${kvHeads} hd=${hd} start=${start}`, () => {
        const m = 5;
        const maxLen = start + m;
        const rand = rng(start * 101 + hd);
        const b = be(kernels);
        const q = randomF32(rand, m * heads * hd).map((x) => x * 4);
        const kt = b.upload(cpuT(randomF32(rand, kvHeads * maxLen * hd), [kvHeads, maxLen, hd]));
        const vt = b.upload(cpuT(randomF32(rand, kvHeads * maxLen * hd), [kvHeads, maxLen, hd]));
        const shape = { heads, kvHeads, headDim: hd };
        const batched = b.attention(b.upload(cpuT(q, [m, heads * hd])), kt, vt, start, shape, 1 / Math.sqrt(hd));
        const all = bytesOf(batched);
        const row = heads * hd * 4;
        for (let i = 0; i < m; i++) {
          const qi = b.upload(cpuT(q.slice(i * heads * hd, (i + 1) * heads * hd), [1, heads * hd]));
          const one = b.attention(qi, kt, vt, start + i, shape, 1 / Math.sqrt(hd));
          expect(bytesOf(one).equals(all.subarray(i * row, (i + 1) * row)), `row ${i}`).toBe(true);
          for (const t of [qi, one]) t.dispose();
        }
        for (const t of [batched, kt, vt]) t.dispose();
      });
});

describe('attention: the SIMD kernel pairs the query heads of a KV head without changing their bits', () => {
  it('heads 2/1 (one pair) equals heads 2/2 over a duplicated KV head (two singles)', () => {
    const [hd, n] = [32, 23];
    const rand = rng(21);
    const b = be('simd128');
    const q = randomF32(rand, 2 * hd);
    const k = randomF32(rand, n * hd);
    const v = randomF32(rand, n * hd);
    const dup = (a: Float32Array<ArrayBuffer>) => f32([...a, ...a]);
    const paired = b.attention(cpuT(q, [1, 2 * hd]), cpuT(k, [1, n, hd]), cpuT(v, [1, n, hd]), n - 1, { heads: 2, kvHeads: 1, headDim: hd }, 0.3);
    const single = b.attention(cpuT(q, [1, 2 * hd]), cpuT(dup(k), [2, n, hd]), cpuT(dup(v), [2, n, hd]), n - 1, { heads: 2, kvHeads: 2, headDim: hd }, 0.3);
    expect(bytesOf(paired).equals(bytesOf(single))).toBe(true);
  });
});

describe('SIMD128 and scalar twins agree', () => {
  it('bit for bit on the elementwise ops (same operations in the same order, no FMA in wasm)', () => {
    const rand = rng(5);
    const n = 1031;
    const g = randomF32(rand, n).map((x) => x * 12);
    const u = randomF32(rand, n);
    const [s, r] = [be('simd128'), be('scalar')];
    const pair = (f: (b: WasmBackend) => Tensor) => [f(s), f(r)].map(bytesOf);
    const [a1, a2] = pair((b) => b.swiglu(cpuT(g, [n]), cpuT(u, [n])));
    expect(a1.equals(a2)).toBe(true);
    const [b1, b2] = pair((b) => b.geluTanh(cpuT(g, [n])));
    expect(b1.equals(b2)).toBe(true);
    const [c1, c2] = pair((b) => {
      const x = b.upload(cpuT(g.slice(0, n - 1), [1, n - 1]));
      const cs = cpuT(randomF32(rng(6), 10 * ((n - 1) / 2)), [10, (n - 1) / 2]);
      b.rope(x, cs, cs, 1, n - 1, 3);
      return x;
    });
    expect(c1.equals(c2)).toBe(true);
  });
});

describe('WasmBackend transformer ops: staging and errors', () => {
  it('cpu, f16 and bf16 inputs are staged; in-place targets on the cpu are written back', () => {
    const b = be('simd128');
    const rand = rng(8);
    const d = 10;
    const x = randomF32(rand, 2 * d);
    const w = randomF32(rand, d);
    const ref = refRmsNorm(x, w, 2, d, 1e-6);
    // bf16 weight (upper halves of f32 bits): the reference sees the same truncated values.
    const wb = new Uint16Array(d);
    const wTrunc = new Float32Array(d);
    for (let j = 0; j < d; j++) {
      wb[j] = new Uint32Array(Float32Array.of(w[j]).buffer)[0] >>> 16;
      wTrunc[j] = new Float32Array(Uint32Array.of(wb[j] << 16).buffer)[0];
    }
    expectClose(read(b.rmsNorm(cpuT(x, [2, d]), cpuT(w, [d]), 1e-6)), ref, (i) => 3 * U * Math.abs(ref[i]), 'cpu rmsNorm');
    const refB = refRmsNorm(x, wTrunc, 2, d, 1e-6);
    expectClose(read(b.rmsNorm(cpuT(x, [2, d]), Tensor.from(wb, [d], 'bf16'), 1e-6)), refB, (i) => 3 * U * Math.abs(refB[i]), 'bf16 w');

    const a = cpuT(Float32Array.of(1, 2, 3, 4, 5), [5]);
    b.addInPlace(a, cpuT(Float32Array.of(10, 20, 30, 40, 50), [5]));
    expect(Array.from(a.data as Float32Array)).toEqual([11, 22, 33, 44, 55]);

    const cache = b.zeros([2, 4, 3]);
    const cpuCache = Tensor.zeros([2, 4, 3], 'f32');
    const src = cpuT(Float32Array.of(1, 2, 3, 4, 5, 6), [1, 6]);
    b.kvWrite(cache, src, 2, 2, 3);
    b.kvWrite(cpuCache, src, 2, 2, 3);
    expect(Array.from(read(cache))).toEqual(Array.from(cpuCache.data as Float32Array));
    expect(Array.from((cpuCache.data as Float32Array).subarray(6, 9))).toEqual([1, 2, 3]);
    expect(Array.from((cpuCache.data as Float32Array).subarray(18, 21))).toEqual([4, 5, 6]);

    const cols = b.sliceColumns(cpuT(Float32Array.of(1, 2, 3, 4, 5, 6), [2, 3]), 1, 2);
    expect([cols.shape, Array.from(read(cols))]).toEqual([[2, 2], [2, 3, 5, 6]]);
    const rows = b.sliceRows(b.upload(cpuT(Float32Array.of(1, 2, 3, 4, 5, 6), [3, 2])), 1, 2);
    expect([rows.shape, Array.from(read(rows))]).toEqual([[2, 2], [3, 4, 5, 6]]);
  });

  it('repeated decode steps do not grow wasm memory', () => {
    const b = be('simd128');
    const [heads, kvHeads, hd, maxLen] = [8, 4, 32, 64];
    const kc = b.zeros([kvHeads, maxLen, hd]);
    const vc = b.zeros([kvHeads, maxLen, hd]);
    const q = b.upload(cpuT(randomF32(rng(1), heads * hd), [1, heads * hd]));
    const kv = b.upload(cpuT(randomF32(rng(2), kvHeads * hd), [1, kvHeads * hd]));
    const step = (p: number) => {
      b.kvWrite(kc, kv, p, kvHeads, hd);
      b.kvWrite(vc, kv, p, kvHeads, hd);
      b.attention(q, kc, vc, p, { heads, kvHeads, headDim: hd }, 0.2).dispose();
    };
    step(maxLen - 1); // the scratch reaches its largest size
    const before = b.runtime.memory.buffer.byteLength;
    for (let i = 0; i < 2000; i++) step(i % maxLen);
    expect(b.runtime.memory.buffer.byteLength).toBe(before);
  });

  it('rejects bad shapes with typed errors before touching anything', () => {
    const b = be('simd128');
    const z = (...s: number[]) => Tensor.zeros(s, 'f32');
    const cases: [() => unknown, RegExp][] = [
      [() => b.rmsNorm(z(2, 5), z(4), 1e-6), /rmsNorm: row width does not match: expected 4, got 5/],
      [() => b.layerNorm(z(2, 4), z(4), z(3), 1e-6), /layerNorm: bias and weight differ in size/],
      [() => b.rope(z(1, 8), z(4, 2), z(4, 2), 2, 3, 0), /headDim even/],
      [() => b.rope(z(2, 8), z(4, 2), z(4, 2), 2, 4, 3), /cos\/sin tables do not cover/],
      [() => b.addInPlace(z(3), z(4)), /addInPlace: sizes differ/],
      [() => b.swiglu(z(3), z(4)), /swiglu: gate and up differ/],
      [() => b.kvWrite(z(2, 4, 3), z(2, 6), 3, 2, 3), /kvWrite past the end of the cache/],
      [() => b.kvWrite(z(2, 4, 3), z(1, 6), 1.5, 2, 3), /kvWrite past the end/],
      [() => b.attention(z(1, 12), z(2, 4, 3), z(2, 4, 3), 0, { heads: 3, kvHeads: 2, headDim: 4 }, 1), /multiple of kvHeads/],
      [() => b.attention(z(2, 12), z(2, 4, 3), z(2, 4, 3), 3, { heads: 4, kvHeads: 2, headDim: 3 }, 1), /positions past the cache/],
      [() => b.attention(z(1, 12), z(2, 4, 3), z(2, 5, 3), 0, { heads: 4, kvHeads: 2, headDim: 3 }, 1), /K and V caches differ/],
      [() => b.geluTanh(Tensor.zeros([3], 'i32')), /geluTanh takes floating-point tensors/],
      [() => b.sliceColumns(z(2, 3), 2, 2), /sliceColumns out of range/],
    ];
    for (const [f, msg] of cases) {
      let err: unknown;
      try {
        f();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(BackendError);
      expect(String((err as Error).message)).toMatch(msg);
    }
    // A rejected in-place op leaves its target as it was.
    const a = cpuT(Float32Array.of(1, 2, 3), [3]);
    expect(() => b.addInPlace(a, z(4))).toThrow(BackendError);
    expect(Array.from(a.data as Float32Array)).toEqual([1, 2, 3]);
  });
});
