// The transformer ops of the WebGPU backend (zeros, rmsNorm, layerNorm, rope, addInPlace, swiglu, geluTanh,
// sliceColumns, sliceRows, kvWrite, attention, and the fused addRmsNorm, addLayerNorm, ropeKvWrite and splitQkvKvWrite) against float64 references written here, on odd sizes: d not a
// multiple of 4, head_dim 16/32/64, GQA 8/2, m = 1/3/17, start > 0, more keys than one 64-key chunk.
// Tolerance: |got − ref| ≤ tol·max(1, |ref|) per element, tol = 2e-6 for one-rounding ops (rope, add), 1e-5 for
// exp-based activations and the norms (an f32 sum over d), 2e-5 for attention (f32 dot products over hd and an
// online softmax over ≤ 90 keys); copies (slices, kvWrite) must be exact. Batch invariance of attention and of
// the norms is checked bit for bit; a decoder chain from embedding to logits must take exactly one readback (and
// one submit), and give the same bits whether ops are batched into one encoder or submitted one by one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WebGPUBackend } from '../../src/backends/webgpu/index.js';
import { BackendError } from '../../src/errors.js';
import { Tensor } from '../../src/tensor.js';
import { gpuBackend } from './env.js';
import { refLinear } from './golden.js';
import { bits, close, f64, rand, refAttention, refGelu, refNorm, refRope, refSilu, ropeTables } from './transformer-ref.js';

function thrown(f: () => unknown): BackendError {
  try {
    f();
  } catch (e) {
    return e as BackendError;
  }
  throw new Error('did not throw');
}

let be: WebGPUBackend;
beforeAll(async () => {
  be = await gpuBackend();
});
afterAll(() => be.dispose());

/** A GPU activation holding t's values (0 + t, exact): what in-place ops take. */
function onGpu(t: Tensor): Tensor {
  const z = be.zeros(t.shape);
  be.addInPlace(z, t);
  return z;
}

describe('norms', () => {
  const cases = [1, 3, 17].flatMap((m) => [1, 7, 33, 67, 300].map((d) => ({ m, d })));
  it.each(cases)('rmsNorm and layerNorm m=$m d=$d', async ({ m, d }) => {
    const x = rand([m, d], 10 * m + d, 2, 0.5), w = rand([d], d + 1, 1, 1), b = rand([d], d + 2);
    const rms = await be.rmsNorm(x, be.upload(w), 1e-6).read();
    expect(close(rms, refNorm(f64(x), f64(w), undefined, 1e-6), 1e-5)).toBeUndefined();
    // An offset mean (3 ± 2) checks LayerNorm's two passes.
    const xs = rand([m, d], 10 * m + d + 3, 2, 3);
    const ln = await be.layerNorm(xs, w, b, 1e-5).read();
    expect(close(ln, refNorm(f64(xs), f64(w), f64(b), 1e-5), 1e-5)).toBeUndefined();
  });

  it('a row normalised alone has the same bits as inside a batch of 17', async () => {
    const d = 67, x = rand([17, d], 5, 3), w = rand([d], 6);
    const all = await be.rmsNorm(x, w, 1e-6).read();
    for (const i of [0, 8, 16]) {
      const one = await be.rmsNorm(Tensor.f32(x.data.subarray(i * d, (i + 1) * d), [1, d]), w, 1e-6).read();
      expect(bits(one)).toEqual(bits(all.subarray(i * d, (i + 1) * d)));
    }
  });
});

describe('rope', () => {
  const cases = [16, 32, 64].flatMap((hd) => [1, 3, 17].flatMap((m) => [0, 5].map((start) => ({ hd, m, start, heads: hd === 64 ? 1 : 3 }))));
  it.each(cases)('hd=$hd heads=$heads m=$m start=$start, in place', async ({ hd, m, start, heads }) => {
    const { cos, sin } = ropeTables(start + m + 2, hd);
    const x = rand([m, heads * hd], hd + m + start, 2);
    const t = onGpu(x);
    be.rope(t, be.upload(cos), be.upload(sin), heads, hd, start);
    const ref = refRope(f64(x), f64(cos), f64(sin), heads, hd, start);
    expect(close(await t.read(), ref, 2e-6)).toBeUndefined();
  });
});

describe('elementwise', () => {
  it.each([1, 7, 1000])('addInPlace n=%i, and a += a', async (n) => {
    const a = rand([n], n, 3), b = rand([n], n + 1, 3);
    const t = onGpu(a);
    be.addInPlace(t, b);
    expect(close(await t.read(), f64(a).map((v, i) => v + b.data[i]), 2e-7)).toBeUndefined();
    be.addInPlace(t, t);
    expect(close(await t.read(), f64(a).map((v, i) => 2 * (v + b.data[i])), 2e-7)).toBeUndefined();
  });

  // Extremes check the ±80 exponent clamps: no NaN or Inf, and the limits (0, x) where they belong.
  const extremes = [-1000, -100, -30, -5, -1e-8, 0, 1e-8, 0.5, 5, 30, 100, 1000];
  it.each([[3, 7], [37, 1], [4, 300]])('swiglu and geluTanh [%i, %i] (plus extremes)', async (m, f) => {
    const g = Tensor.f32([...rand([m * f], m + f, 6).data, ...extremes], [m * f + extremes.length]);
    const u = rand([m * f + extremes.length], m + f + 1, 2);
    const sw = await be.swiglu(g, u).read();
    expect(close(sw, f64(g).map((v, i) => refSilu(v) * u.data[i]), 1e-5)).toBeUndefined();
    const ge = await be.geluTanh(g).read();
    expect(close(ge, f64(g).map(refGelu), 1e-5)).toBeUndefined();
    expect(be.geluTanh(g).shape).toEqual(g.shape);
  });
});

describe('copies', () => {
  it('sliceColumns and sliceRows are exact', async () => {
    const x = rand([5, 13], 1), xv = x.data;
    for (const [start, width] of [[3, 7], [0, 13], [12, 1], [4, 0]]) {
      const y = be.sliceColumns(x, start, width);
      expect(y.shape).toEqual([5, width]);
      const ref = Array.from({ length: 5 * width }, (_, p) => xv[Math.floor(p / width) * 13 + start + (p % width)]);
      expect(Array.from(await y.read())).toEqual(ref);
    }
    for (const [start, count] of [[1, 3], [4, 1], [0, 5]]) {
      const y = be.sliceRows(onGpu(x), start, count);
      expect(y.shape).toEqual([count, 13]);
      expect(Array.from(await y.read())).toEqual(Array.from(xv.subarray(start * 13, (start + count) * 13)));
    }
  });

  it('kvWrite fills the head-major cache at start … start+m−1 and nothing else', async () => {
    const kvHeads = 2, hd = 16, maxLen = 9;
    const cache = be.zeros([kvHeads, maxLen, hd]);
    const a = rand([3, kvHeads * hd], 1), b = rand([2, kvHeads * hd], 2);
    be.kvWrite(cache, a, 4, kvHeads, hd);
    be.kvWrite(cache, b, 0, kvHeads, hd);
    const ref = new Float32Array(kvHeads * maxLen * hd);
    for (const [src, start, m] of [[a, 4, 3], [b, 0, 2]] as const) {
      for (let i = 0; i < m; i++) for (let g = 0; g < kvHeads; g++) for (let t = 0; t < hd; t++) ref[(g * maxLen + start + i) * hd + t] = src.data[i * kvHeads * hd + g * hd + t];
    }
    expect(bits(await cache.read())).toEqual(bits(ref));
  });
});

describe('attention', () => {
  const shapes = [
    { heads: 2, kvHeads: 2, hd: 16 },
    { heads: 8, kvHeads: 2, hd: 32 },
    { heads: 4, kvHeads: 1, hd: 64 },
  ];
  // start 70 with m 17: 87 keys, over two 64-key chunks.
  const cases = shapes.flatMap((s) => [1, 3, 17].flatMap((m) => [0, 70].map((start) => ({ ...s, m, start }))));
  it.each(cases)('heads=$heads kvHeads=$kvHeads hd=$hd m=$m start=$start', async ({ heads, kvHeads, hd, m, start }) => {
    const maxLen = start + m + 3;
    const seed = heads * 1000 + hd * 10 + m + start;
    const q = rand([m, heads * hd], seed, 2), k = rand([kvHeads, maxLen, hd], seed + 1, 2), v = rand([kvHeads, maxLen, hd], seed + 2, 3);
    const scale = 1 / Math.sqrt(hd);
    const y = be.attention(q, k, v, start, { heads, kvHeads, headDim: hd }, scale);
    expect(y.shape).toEqual([m, heads * hd]);
    const ref = refAttention(f64(q), f64(k), f64(v), start, heads, kvHeads, hd, maxLen, scale);
    expect(close(await y.read(), ref, 2e-5)).toBeUndefined();
  });

  it('batch invariance: the rows of an m = 5 call equal the same rows computed one at a time, bit for bit', async () => {
    const heads = 8, kvHeads = 2, hd = 32, start = 62, m = 5, maxLen = 80, width = heads * hd;
    const K = be.upload(rand([kvHeads, maxLen, hd], 1, 2)), V = be.upload(rand([kvHeads, maxLen, hd], 2, 2));
    const q = rand([m, width], 3, 2);
    const all = await be.attention(q, K, V, start, { heads, kvHeads, headDim: hd }, 0.2).read();
    for (let i = 0; i < m; i++) {
      const row = Tensor.f32(q.data.subarray(i * width, (i + 1) * width), [1, width]);
      const one = await be.attention(row, K, V, start + i, { heads, kvHeads, headDim: hd }, 0.2).read();
      expect(bits(one), `row ${i}`).toEqual(bits(all.subarray(i * width, (i + 1) * width)));
    }
  });
});

describe('fused decoder steps', () => {
  const cases = [1, 3, 17].flatMap((m) => [1, 7, 67, 300].map((d) => ({ m, d })));
  it.each(cases)('addRmsNorm m=$m d=$d: x += o in place, then RMSNorm of the sum', async ({ m, d }) => {
    const x = rand([m, d], 20 * m + d, 2, 0.5), o = rand([m, d], 20 * m + d + 1, 1), w = rand([d], d + 3, 1, 1);
    const t = onGpu(x);
    const y = await be.addRmsNorm(t, o, be.upload(w), 1e-6).read();
    const sum = f64(x).map((v, i) => v + o.data[i]);
    expect(close(await t.read(), sum, 2e-7)).toBeUndefined();
    expect(close(y, refNorm(sum, f64(w), undefined, 1e-6), 1e-5)).toBeUndefined();
  });

  it.each([1, 3, 17].map((m) => ({ m })))('addLayerNorm m=$m d=67: x += o in place, then LayerNorm of the sum (offset mean)', async ({ m }) => {
    const d = 67, x = rand([m, d], 30 + m, 2, 3), o = rand([m, d], 31 + m, 1), w = rand([d], 32, 1, 1), b = rand([d], 33);
    const t = onGpu(x);
    const y = await be.addLayerNorm(t, o, be.upload(w), be.upload(b), 1e-5).read();
    const sum = f64(x).map((v, i) => v + o.data[i]);
    expect(close(await t.read(), sum, 2e-7)).toBeUndefined();
    expect(close(y, refNorm(sum, f64(w), f64(b), 1e-5), 1e-5)).toBeUndefined();
  });

  it('addRmsNorm: x += x, and a row alone has the same bits as inside a batch of 17', async () => {
    const d = 67, x = rand([17, d], 8, 3), w = rand([d], 9);
    const t = onGpu(x);
    const y = await be.addRmsNorm(t, t, w, 1e-6).read();
    const twice = f64(x).map((v) => 2 * v);
    expect(close(await t.read(), twice, 2e-7)).toBeUndefined();
    expect(close(y, refNorm(twice, f64(w), undefined, 1e-6), 1e-5)).toBeUndefined();
    const o = rand([17, d], 10);
    const all = await be.addRmsNorm(onGpu(x), o, w, 1e-6).read();
    for (const i of [0, 8, 16]) {
      const one = await be.addRmsNorm(onGpu(Tensor.f32(x.data.slice(i * d, (i + 1) * d), [1, d])), Tensor.f32(o.data.slice(i * d, (i + 1) * d), [1, d]), w, 1e-6).read();
      expect(bits(one)).toEqual(bits(all.subarray(i * d, (i + 1) * d)));
    }
  });

  const ropeCases = [{ heads: 3, kvHeads: 1, hd: 16 }, { heads: 4, kvHeads: 2, hd: 32 }].flatMap((s) => [1, 3].flatMap((m) => [0, 5].map((start) => ({ ...s, m, start }))));
  it.each(ropeCases)('ropeKvWrite heads=$heads kvHeads=$kvHeads hd=$hd m=$m start=$start: q in place, rope(k) and v into the caches, nothing else', async ({ heads, kvHeads, hd, m, start }) => {
    const maxLen = 10;
    const { cos, sin } = ropeTables(maxLen, hd);
    const q = rand([m, heads * hd], hd + m, 2), k = rand([m, kvHeads * hd], hd + m + 1, 2), v = rand([m, kvHeads * hd], hd + m + 2, 2);
    // Caches full of other values: the positions outside start … start+m−1 must keep them.
    const kc0 = rand([kvHeads, maxLen, hd], 3), vc0 = rand([kvHeads, maxLen, hd], 4);
    const [qt, kc, vc] = [onGpu(q), onGpu(kc0), onGpu(vc0)];
    be.ropeKvWrite(qt, onGpu(k), onGpu(v), be.upload(cos), be.upload(sin), kc, vc, start, { heads, kvHeads, headDim: hd });
    const [c, s] = [f64(cos), f64(sin)];
    expect(close(await qt.read(), refRope(f64(q), c, s, heads, hd, start), 2e-6)).toBeUndefined();
    const kr = refRope(f64(k), c, s, kvHeads, hd, start);
    const [kRef, vRef] = [f64(kc0), f64(vc0)];
    for (let i = 0; i < m; i++) {
      for (let g = 0; g < kvHeads; g++) {
        for (let t = 0; t < hd; t++) {
          kRef[(g * maxLen + start + i) * hd + t] = kr[i * kvHeads * hd + g * hd + t];
          vRef[(g * maxLen + start + i) * hd + t] = v.data[i * kvHeads * hd + g * hd + t];
        }
      }
    }
    expect(close(await kc.read(), kRef, 2e-6)).toBeUndefined();
    expect(bits(await vc.read())).toEqual(bits(Float32Array.from(vRef)));
  });

  it.each([1, 3].map((m) => ({ m })))('splitQkvKvWrite m=$m: q out, k and v into the caches at start … , nothing else, exactly', async ({ m }) => {
    const heads = 3, kvHeads = 1, hd = 8, maxLen = 7, start = 2, qw = heads * hd, kw = kvHeads * hd, width = qw + 2 * kw;
    const qkv = rand([m, width], 40 + m, 2);
    const kc0 = rand([kvHeads, maxLen, hd], 41), vc0 = rand([kvHeads, maxLen, hd], 42);
    const [kc, vc] = [onGpu(kc0), onGpu(vc0)];
    const q = await be.splitQkvKvWrite(onGpu(qkv), kc, vc, start, { heads, kvHeads, headDim: hd }).read();
    const qRef = new Float32Array(m * qw), kRef = Float32Array.from(kc0.data), vRef = Float32Array.from(vc0.data);
    for (let i = 0; i < m; i++) {
      for (let c = 0; c < qw; c++) qRef[i * qw + c] = qkv.data[i * width + c];
      for (let g = 0; g < kvHeads; g++) {
        for (let t = 0; t < hd; t++) {
          kRef[(g * maxLen + start + i) * hd + t] = qkv.data[i * width + qw + g * hd + t];
          vRef[(g * maxLen + start + i) * hd + t] = qkv.data[i * width + qw + kw + g * hd + t];
        }
      }
    }
    expect(bits(q)).toEqual(bits(qRef));
    expect(bits(await kc.read())).toEqual(bits(kRef));
    expect(bits(await vc.read())).toEqual(bits(vRef));
  });

  it('typed errors, raised before anything is written', async () => {
    const { cos, sin } = ropeTables(4, 8);
    const shape = { heads: 1, kvHeads: 1, headDim: 8 };
    const q = rand([1, 8], 1);
    const [qt, kc] = [onGpu(q), be.zeros([1, 4, 8])];
    expect(thrown(() => be.ropeKvWrite(qt, rand([1, 8], 2), rand([1, 8], 3), cos, sin, kc, kc, 0, shape)).code).toBe('shape_mismatch');
    expect(thrown(() => be.ropeKvWrite(qt, rand([1, 8], 2), rand([1, 8], 3), cos, sin, kc, be.zeros([1, 4, 8]), 4, shape)).code).toBe('shape_mismatch');
    expect(thrown(() => be.ropeKvWrite(qt, rand([2, 8], 2), rand([1, 8], 3), cos, sin, kc, be.zeros([1, 4, 8]), 0, shape)).code).toBe('shape_mismatch');
    expect(thrown(() => be.ropeKvWrite(q, rand([1, 8], 2), rand([1, 8], 3), cos, sin, kc, be.zeros([1, 4, 8]), 0, shape)).code).toBe('wrong_device');
    expect(thrown(() => be.splitQkvKvWrite(rand([1, 24], 4), kc, kc, 0, shape)).code).toBe('shape_mismatch');
    expect(thrown(() => be.splitQkvKvWrite(rand([1, 24], 4), kc, be.zeros([1, 4, 8]), 4, shape)).code).toBe('shape_mismatch');
    expect(thrown(() => be.splitQkvKvWrite(rand([1, 23], 4), kc, be.zeros([1, 4, 8]), 0, shape)).code).toBe('shape_mismatch');
    expect(bits(await qt.read())).toEqual(bits(q.data));
    expect(bits(await kc.read())).toEqual(bits(new Float32Array(32)));
    const x = onGpu(rand([2, 8], 5));
    expect(thrown(() => be.addRmsNorm(x, rand([3, 8], 6), rand([8], 7), 1e-6)).code).toBe('shape_mismatch');
    expect(thrown(() => be.addRmsNorm(x, rand([2, 8], 6), rand([7], 7), 1e-6)).code).toBe('shape_mismatch');
    expect(thrown(() => be.addRmsNorm(be.upload(rand([2, 8], 5)), rand([2, 8], 6), rand([8], 7), 1e-6)).code).toBe('wrong_device');
    expect(thrown(() => be.addLayerNorm(x, rand([2, 8], 6), rand([8], 7), rand([7], 8), 1e-5)).code).toBe('shape_mismatch');
  });
});

describe('errors', () => {
  it('typed errors for in-place targets, ranges and shapes', () => {
    const x = rand([2, 8], 1);
    const { cos, sin } = ropeTables(4, 8);
    expect(thrown(() => be.rope(x, cos, sin, 1, 8, 0)).code).toBe('wrong_device');
    expect(thrown(() => be.addInPlace(be.upload(x), x)).code).toBe('wrong_device');
    expect(thrown(() => be.rope(onGpu(x), cos, sin, 1, 8, 3)).code).toBe('shape_mismatch');
    expect(thrown(() => be.rope(onGpu(x), cos, sin, 2, 4, 0)).code).toBe('shape_mismatch');
    expect(thrown(() => be.addInPlace(onGpu(x), rand([3], 2))).code).toBe('shape_mismatch');
    expect(thrown(() => be.kvWrite(be.zeros([1, 4, 8]), x, 3, 1, 8)).code).toBe('shape_mismatch');
    expect(thrown(() => be.sliceColumns(x, 5, 4)).code).toBe('shape_mismatch');
    expect(thrown(() => be.sliceRows(x, 1, 2)).code).toBe('shape_mismatch');
    expect(thrown(() => be.attention(rand([1, 3 * 8], 3), be.zeros([2, 4, 8]), be.zeros([2, 4, 8]), 0, { heads: 3, kvHeads: 2, headDim: 8 }, 1)).code).toBe('shape_mismatch');
    expect(thrown(() => be.attention(rand([1, 512], 3), be.zeros([1, 4, 512]), be.zeros([1, 4, 512]), 0, { heads: 1, kvHeads: 1, headDim: 512 }, 1)).code).toBe('shape_mismatch');
    expect(thrown(() => be.rmsNorm(x, rand([7], 1), 1e-6)).code).toBe('shape_mismatch');
    const e = thrown(() => be.rope(x, cos, sin, 1, 8, 0));
    expect(e).toBeInstanceOf(BackendError);
    expect(e.message).toMatch(/in-place op needs a tensor on this GPU backend/);
  });
});

// ── a decoder chain from embedding to logits ─────────────────────────────────────────────────────────

const D = 24, HEADS = 3, KV = 1, HD = 8, F = 16, VOCAB = 11, MAXLEN = 8;
const W = {
  E: rand([VOCAB, D], 1),
  norm: rand([D], 2, 0.5, 1),
  qkv: rand([(HEADS + 2 * KV) * HD, D], 3, 0.5),
  gate: rand([F, D], 4, 0.5),
  up: rand([F, D], 5, 0.5),
  down: rand([D, F], 6, 0.5),
  lm: rand([VOCAB, D], 7, 0.5),
};
const TABLES = ropeTables(MAXLEN, HD);

/** One block + LM head for `ids` at positions start…; tensors stay on `b` until the logits are read. */
function step(b: WebGPUBackend, w: Record<keyof typeof W, Tensor>, tables: { cos: Tensor; sin: Tensor }, kc: Tensor, vc: Tensor, ids: number[], start: number, made: Tensor[] = []): Tensor {
  const m = ids.length;
  const keep = <T extends Tensor>(t: T): T => (made.push(t), t);
  const h = keep(b.embedding(Tensor.from(Int32Array.from(ids), [m], 'i32'), w.E, []));
  const n = keep(b.rmsNorm(h, w.norm, 1e-6));
  const qkv = keep(b.linear(n, w.qkv, undefined, []));
  const [q, k, v] = [[0, HEADS], [HEADS, KV], [HEADS + KV, KV]].map(([from, heads]) => keep(b.sliceColumns(qkv, from * HD, heads * HD)));
  b.rope(q, tables.cos, tables.sin, HEADS, HD, start);
  b.rope(k, tables.cos, tables.sin, KV, HD, start);
  b.kvWrite(kc, k, start, KV, HD);
  b.kvWrite(vc, v, start, KV, HD);
  const a = keep(b.attention(q, kc, vc, start, { heads: HEADS, kvHeads: KV, headDim: HD }, 1 / Math.sqrt(HD)));
  const s = keep(b.swiglu(keep(b.linear(a, w.gate, undefined, [])), keep(b.linear(a, w.up, undefined, []))));
  b.addInPlace(h, keep(b.linear(s, w.down, undefined, [])));
  return keep(b.linear(keep(b.sliceRows(h, m - 1, 1)), w.lm, undefined, []));
}

/** The same chain in float64 (kCache / vCache grow in place, head-major [KV, MAXLEN, HD]). */
function refStep(kc: Float64Array, vc: Float64Array, ids: number[], start: number): Float64Array {
  const m = ids.length, E = f64(W.E);
  const h = Float64Array.from({ length: m * D }, (_, p) => E[ids[Math.floor(p / D)] * D + (p % D)]);
  const n = refNorm(h, f64(W.norm), undefined, 1e-6);
  const lin = (x: Float64Array, w: Tensor) => refLinear(Tensor.from(Float64Array.from(x), [x.length / w.shape[1], w.shape[1]], 'f64'), w, undefined, []);
  const qkv = lin(n, W.qkv), width = (HEADS + 2 * KV) * HD;
  const cols = (from: number, wd: number) => Float64Array.from({ length: m * wd }, (_, p) => qkv[Math.floor(p / wd) * width + from + (p % wd)]);
  const [cos, sin] = [f64(TABLES.cos), f64(TABLES.sin)];
  const q = refRope(cols(0, HEADS * HD), cos, sin, HEADS, HD, start);
  const k = refRope(cols(HEADS * HD, KV * HD), cos, sin, KV, HD, start);
  const v = cols((HEADS + KV) * HD, KV * HD);
  for (let i = 0; i < m; i++) for (let t = 0; t < HD; t++) [kc[(start + i) * HD + t], vc[(start + i) * HD + t]] = [k[i * HD + t], v[i * HD + t]];
  const a = refAttention(q, kc, vc, start, HEADS, KV, HD, MAXLEN, 1 / Math.sqrt(HD));
  const g = lin(a, W.gate), u = lin(a, W.up);
  const o = lin(g.map((x, i) => refSilu(x) * u[i]), W.down);
  const last = h.subarray((m - 1) * D).map((x, i) => x + o[(m - 1) * D + i]);
  return lin(last, W.lm);
}

describe('decoder chain', () => {
  async function run(b: WebGPUBackend, check: boolean): Promise<Float32Array[]> {
    const w = Object.fromEntries(Object.entries(W).map(([k, t]) => [k, b.upload(t)])) as Record<keyof typeof W, Tensor>;
    const tables = { cos: b.upload(TABLES.cos), sin: b.upload(TABLES.sin) };
    const kc = b.zeros([KV, MAXLEN, HD]), vc = b.zeros([KV, MAXLEN, HD]);
    const outs: Float32Array[] = [];
    for (const [ids, start] of [[[3, 9, 0], 0], [[5], 3], [[10], 4]] as const) {
      const [reads, submits] = [b.stats.readbacks, b.stats.submits];
      const logits = step(b, w, tables, kc, vc, [...ids], start);
      expect(b.stats.readbacks).toBe(reads);
      outs.push((await logits.read()) as Float32Array);
      if (check) {
        // One readback, and (all ops under submitEvery dispatches, no host input but the ids) one submit.
        expect(b.stats.readbacks - reads).toBe(1);
        expect(b.stats.submits - submits).toBe(1);
      }
    }
    return outs;
  }

  it('embedding → … → logits for a prefill of 3 and two decode steps: one readback each, = float64 reference', async () => {
    const outs = await run(be, true);
    const kc = new Float64Array(KV * MAXLEN * HD), vc = new Float64Array(KV * MAXLEN * HD);
    for (const [j, [ids, start]] of ([[[3, 9, 0], 0], [[5], 3], [[10], 4]] as const).entries()) {
      expect(close(outs[j], refStep(kc, vc, [...ids], start), 1e-5), `step ${j}`).toBeUndefined();
    }
  });

  it('the same bits with one submit per op (submitEvery: 1)', async () => {
    const eager = await gpuBackend({ submitEvery: 1 });
    const [a, b] = [await run(be, false), await run(eager, false)];
    a.forEach((x, i) => expect(bits(b[i])).toEqual(bits(x)));
    eager.dispose();
  });

  it('repeated decode steps (intermediates disposed) allocate no buffer and create no bind group once warm', async () => {
    // A backend of its own: tensors other tests dropped without dispose would return to this pool whenever the
    // garbage collector runs, and change which buffers (hence bind groups) the ops get.
    const fresh = await gpuBackend();
    const w = Object.fromEntries(Object.entries(W).map(([k, t]) => [k, fresh.upload(t)])) as Record<keyof typeof W, Tensor>;
    const tables = { cos: fresh.upload(TABLES.cos), sin: fresh.upload(TABLES.sin) };
    const kc = fresh.zeros([KV, MAXLEN, HD]), vc = fresh.zeros([KV, MAXLEN, HD]);
    // The pool hands buffers out last-released-first, so which buffer each op gets settles after a few steps.
    let before: number[] = [];
    for (let i = 0; i < 8; i++) {
      if (i === 4) before = [fresh.pool.buffersCreated, fresh.stats.bindGroups, fresh.pipelines.compiled];
      const made: Tensor[] = [];
      await step(fresh, w, tables, kc, vc, [i], 2, made).read();
      made.forEach((t) => t.dispose());
    }
    expect([fresh.pool.buffersCreated, fresh.stats.bindGroups, fresh.pipelines.compiled]).toEqual(before);
    fresh.dispose();
  });
});
