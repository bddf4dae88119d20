// Tile-edge sweep of every WGSL kernel against the float64 reference, as named cases: m = 1…5 and past the
// GEMM tile, n and k at tile−1/tile/tile+1, r ∈ {1, 8, 64, 130 (past the fused GEMV's MAX_R)}, stacked
// adapters, lora bias, DoRA row scale, 4/8-bit quantised W, embedding. Tolerance: 1e-4·max(1, max|y_ref|)·√(k/64+1)
// (f32 accumulation over k terms).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoRADelta } from '../../src/backends/backend.js';
import type { WebGPUBackend } from '../../src/backends/webgpu/index.js';
import { Tensor } from '../../src/tensor.js';
import { gpuBackend } from './env.js';
import { compare, dequantize, refLinear, toF64 } from './golden.js';

function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
}
function rand(shape: number[], seed: number, amp = 1): Tensor<'f32'> {
  const r = rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return Tensor.f32(Array.from({ length: n }, () => r() * amp), shape);
}
const tol = (ref: Float64Array, k: number) => 1e-4 * Math.max(1, ...Array.from(ref, Math.abs)) * Math.sqrt(k / 64 + 1);

interface LinearCase { m: number; k: number; n: number; ranks: number[]; loraBias?: boolean; bias?: boolean; dora?: boolean }
const LINEAR: LinearCase[] = [
  { m: 1, k: 1, n: 1, ranks: [1] },
  { m: 1, k: 15, n: 17, ranks: [8], bias: true },
  { m: 2, k: 16, n: 16, ranks: [1] },
  { m: 3, k: 17, n: 15, ranks: [64], bias: true },
  { m: 4, k: 300, n: 65, ranks: [8], bias: true },
  { m: 5, k: 17, n: 33, ranks: [8] },
  { m: 15, k: 16, n: 17, ranks: [8], bias: true },
  { m: 16, k: 33, n: 16, ranks: [1] },
  { m: 17, k: 15, n: 31, ranks: [64], bias: true, dora: true },
  { m: 1, k: 37, n: 29, ranks: [130] },
  { m: 1, k: 37, n: 29, ranks: [4, 2], loraBias: true, bias: true },
  { m: 2, k: 37, n: 11, ranks: [8], loraBias: true, dora: true, bias: true },
  { m: 33, k: 37, n: 11, ranks: [4, 2, 3], loraBias: true, bias: true, dora: true },
  { m: 3, k: 37, n: 11, ranks: [128], loraBias: true },
  // Fused GEMV with more row groups than workgroups (n/4 > FUSED_GEMV_GROUPS): each workgroup loops over several.
  { m: 1, k: 1031, n: 2053, ranks: [8], loraBias: true, bias: true },
  { m: 4, k: 257, n: 1030, ranks: [16], bias: true, dora: true },
];

let gemv: WebGPUBackend;
let gemm: WebGPUBackend;
beforeAll(async () => {
  gemv = await gpuBackend();
  gemm = await gpuBackend({ gemvMaxM: 0 });
});
afterAll(() => {
  gemv.dispose();
  gemm.dispose();
});

function deltasFor(c: LinearCase, seed: number): LoRADelta[] {
  return c.ranks.map((r, i) => ({
    a: rand([c.k, r], seed + 10 * i + 1),
    b: rand([r, c.n], seed + 10 * i + 2),
    scale: 0.5 + i,
    bias: c.loraBias ? rand([c.n], seed + 10 * i + 3) : undefined,
  }));
}

describe('linear', () => {
  for (const [ci, c] of LINEAR.entries()) {
    const title = `m=${c.m} k=${c.k} n=${c.n} r=[${c.ranks}]${c.loraBias ? ' lora-bias' : ''}${c.bias ? ' bias' : ''}${c.dora ? ' dora' : ''}`;
    it.each(['gemv', 'gemm'])(`${title} (%s route)`, async (route) => {
      const be = route === 'gemv' ? gemv : gemm;
      const x = rand([c.m, c.k], 100 + ci), w = rand([c.n, c.k], 200 + ci);
      const bias = c.bias ? rand([c.n], 300 + ci) : undefined;
      const rs = c.dora ? Tensor.f32(Array.from({ length: c.n }, (_, i) => 0.5 + (i % 7) / 7), [c.n]) : undefined;
      const deltas = deltasFor(c, 400 + 10 * ci);
      const W = be.upload(w);
      for (const [name, ds, rowScale] of [['off', [], undefined], ['on', deltas, rs]] as const) {
        const y = be.linear(x, W, bias, ds, rowScale);
        const ref = refLinear(x, w, bias, ds, rowScale);
        const bad = compare(await y.read(), ref, tol(ref, c.k), y.shape);
        expect(bad, `${name}: ${bad}`).toBeUndefined();
      }
    });
  }
});

describe('quantizedLinear', () => {
  const CASES = [
    { m: 1, k: 64, n: 17, bits: 4 as const, g: 32, r: 4 },
    { m: 5, k: 96, n: 33, bits: 8 as const, g: 32, r: 8 },
    { m: 3, k: 512, n: 9, bits: 4 as const, g: 64, r: 130 },
  ];
  for (const [ci, c] of CASES.entries()) {
    it(`m=${c.m} k=${c.k} n=${c.n} bits=${c.bits} group=${c.g} r=${c.r}`, async () => {
      const r = rng(900 + ci);
      const per = 32 / c.bits;
      const packed = Uint32Array.from({ length: (c.n * c.k) / per }, () => (r() * 2 ** 31) >>> 0);
      const w = Tensor.from(packed, [c.n, c.k / per], 'u32');
      const scales = rand([c.n, c.k / c.g], 910 + ci, 0.05), biases = rand([c.n, c.k / c.g], 920 + ci, 0.1);
      const x = rand([c.m, c.k], 930 + ci), bias = rand([c.n], 940 + ci);
      const d: LoRADelta = { a: rand([c.k, c.r], 950 + ci), b: rand([c.r, c.n], 960 + ci), scale: 0.25 };
      const dense = dequantize(w, scales, biases, c.bits, c.g, c.k, c.n);
      const q = { w: gemv.upload(w), scales: gemv.upload(scales), biases: gemv.upload(biases), bits: c.bits, groupSize: c.g, k: c.k, n: c.n };
      for (const ds of [[], [d]]) {
        const y = gemv.quantizedLinear(x, q, bias, ds);
        const ref = refLinear(x, dense, bias, ds);
        const bad = compare(await y.read(), ref, tol(ref, c.k), y.shape);
        expect(bad, `deltas=${ds.length}: ${bad}`).toBeUndefined();
      }
    });
  }
});

describe('embedding', () => {
  it.each([
    { vocab: 50, dim: 24, ranks: [4] },
    { vocab: 7, dim: 65, ranks: [1, 3] },
  ])('vocab=$vocab dim=$dim r=$ranks', async ({ vocab, dim, ranks }) => {
    const E = rand([vocab, dim], 1), ids = Tensor.from(Int32Array.from([0, vocab - 1, 3, 3, 1]), [5], 'i32');
    const ds = ranks.map((r, i) => ({ a: rand([vocab, r], 10 + i), b: rand([r, dim], 20 + i), scale: 1.5 + i }));
    const y = gemv.embedding(ids, gemv.upload(E), ds);
    const e = toF64(E), idv = ids.data;
    const ref = new Float64Array(5 * dim);
    for (let i = 0; i < 5; i++) for (let c = 0; c < dim; c++) {
      let v = e[idv[i] * dim + c];
      for (const d of ds) {
        const r = d.a.shape[1], A = toF64(d.a), B = toF64(d.b);
        for (let j = 0; j < r; j++) v += d.scale * A[idv[i] * r + j] * B[j * dim + c];
      }
      ref[i * dim + c] = v;
    }
    expect(compare(await y.read(), ref, tol(ref, 8), y.shape)).toBeUndefined();
  });
});

describe('storage types', () => {
  it('bf16 / f64 / f16 inputs are widened on upload (f16 kept as f16 only with shader-f16)', async () => {
    const k = 19, n = 13, r = 3;
    const x = rand([2, k], 5);
    const w = rand([n, k], 6);
    const toBf16 = (t: Tensor<'f32'>) => Tensor.from(Uint16Array.from(new Uint32Array(Float32Array.from(t.data).buffer), (u) => u >>> 16), [...t.shape], 'bf16');
    const a = toBf16(rand([k, r], 7)), b = toBf16(rand([r, n], 8));
    const y = gemv.linear(x, gemv.upload(w), undefined, [{ a: gemv.upload(a), b: gemv.upload(b), scale: 2 }]);
    const ref = refLinear(x, w, undefined, [{ a, b, scale: 2 }]);
    expect(compare(await y.read(), ref, tol(ref, k), y.shape)).toBeUndefined();
    const w64 = Tensor.from(Float64Array.from(w.data), [n, k], 'f64');
    const y64 = gemv.linear(x, w64, undefined, []);
    expect(compare(await y64.read(), refLinear(x, w, undefined, []), 1e-4, y64.shape)).toBeUndefined();
    console.info(`shader-f16: ${gemv.f16 ? 'yes (f16 storage, f32 accumulation)' : 'no (f16 widened to f32)'}; ${gemv}`);
  });
});
