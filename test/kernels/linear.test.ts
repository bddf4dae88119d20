import { beforeAll, describe, expect, it } from 'vitest';
import type { LoRADelta } from '../../src/backends/backend.js';
import { JsBackend, type RefDelta, refLinear } from '../../src/backends/js.js';
import { WasmBackend } from '../../src/backends/wasm.js';
import { Tensor } from '../../src/tensor.js';
import { EPS32, expectClose, randomF32, rng } from './helpers.js';

/**
 * linear / lora_linear kernels (SIMD128 and their scalar twins) against the float64 reference `refLinear`.
 *
 * Tolerance: f32 accumulation of a k-term dot product plus Σr LoRA terms and a handful of epilogue ops is within
 *   |got − ref| ≤ (k + Σr + 8)·2⁻²³ · ref_abs
 * where ref_abs is refLinear evaluated on the absolute values of every operand (the sum of |terms|).
 */

interface Case {
  m: number;
  k: number;
  n: number;
  ranks: number[];
  bias: boolean;
  loraBias: boolean;
  rowScale: boolean;
}

const cases: Case[] = [];
// Tile edges: m = 1…MR+1 and 64; n, k at tile−1, tile, tile+1 and odd sizes.
for (const m of [1, 2, 3, 4, 5, 7, 64])
  for (const [k, n] of [[37, 130], [3, 5], [4, 4], [15, 17], [16, 16], [33, 31], [130, 37]] as const)
    cases.push({ m, k, n, ranks: [], bias: m % 2 === 1, loraBias: false, rowScale: false });
for (const m of [1, 2, 3, 5, 64])
  for (const r of [1, 8, 64])
    cases.push({ m, k: 37, n: 130, ranks: [r], bias: true, loraBias: false, rowScale: false });
cases.push({ m: 5, k: 130, n: 37, ranks: [8, 1, 64], bias: true, loraBias: true, rowScale: false });
cases.push({ m: 3, k: 67, n: 45, ranks: [8, 3], bias: false, loraBias: true, rowScale: true });
cases.push({ m: 64, k: 129, n: 63, ranks: [16], bias: true, loraBias: false, rowScale: true });
cases.push({ m: 1, k: 1030, n: 19, ranks: [16], bias: true, loraBias: true, rowScale: true });
cases.push({ m: 9, k: 2100, n: 9, ranks: [4], bias: true, loraBias: false, rowScale: false }); // crosses a k-block
cases.push({ m: 100, k: 40, n: 12, ranks: [2], bias: true, loraBias: false, rowScale: false }); // crosses an m-block

function title(c: Case): string {
  return `m=${c.m} k=${c.k} n=${c.n} r=[${c.ranks.join(',')}] bias=${c.bias} loraBias=${c.loraBias} rowScale=${c.rowScale}`;
}

interface Built {
  x: Float32Array<ArrayBuffer>;
  w: Float32Array<ArrayBuffer>;
  bias?: Float32Array<ArrayBuffer>;
  rowScale?: Float32Array<ArrayBuffer>;
  deltas: (RefDelta & { a: Float32Array<ArrayBuffer>; b: Float32Array<ArrayBuffer>; bias?: Float32Array<ArrayBuffer> })[];
}

function build(c: Case, seed: number): Built {
  const rand = rng(seed);
  return {
    x: randomF32(rand, c.m * c.k),
    w: randomF32(rand, c.n * c.k),
    bias: c.bias ? randomF32(rand, c.n) : undefined,
    rowScale: c.rowScale ? Float32Array.from(randomF32(rand, c.n), (v) => 0.5 + Math.abs(v)) : undefined,
    deltas: c.ranks.map((r, i) => ({
      a: randomF32(rand, c.k * r),
      b: randomF32(rand, r * c.n),
      r,
      scale: 0.5 + i,
      bias: c.loraBias ? randomF32(rand, c.n) : undefined,
    })),
  };
}

const abs = (a: ArrayLike<number>) => Float64Array.from(a, Math.abs);

function reference(c: Case, d: Built): { ref: Float64Array; refAbs: Float64Array } {
  const ref = refLinear(d.x, c.m, c.k, d.w, c.n, d.bias, d.deltas, d.rowScale);
  const refAbs = refLinear(
    abs(d.x), c.m, c.k, abs(d.w), c.n, d.bias && abs(d.bias),
    d.deltas.map((q) => ({ a: abs(q.a), b: abs(q.b), r: q.r, scale: Math.abs(q.scale), bias: q.bias && abs(q.bias) })),
    d.rowScale && abs(d.rowScale),
  );
  return { ref, refAbs };
}

function run(be: WasmBackend | JsBackend, c: Case, d: Built): Float32Array {
  const up = (a: Float32Array<ArrayBuffer>, shape: number[]) => be.upload(Tensor.from(a, shape, 'f32'));
  const deltas: LoRADelta[] = d.deltas.map((q) => ({
    a: up(q.a, [c.k, q.r]),
    b: up(q.b, [q.r, c.n]),
    scale: q.scale,
    bias: q.bias && up(q.bias, [c.n]),
  }));
  const y = be.linear(Tensor.from(d.x, [c.m, c.k], 'f32'), up(d.w, [c.n, c.k]), d.bias && up(d.bias, [c.n]), deltas, d.rowScale && up(d.rowScale, [c.n]));
  expect(y.shape).toEqual([c.m, c.n]);
  expect(y.dtype).toBe('f32');
  const out = Float32Array.from(y.data);
  y.dispose();
  return out;
}

const backends: Record<string, () => Promise<WasmBackend | JsBackend>> = {
  'wasm simd128': () => WasmBackend.create({ kernels: 'simd128' }),
  'wasm scalar': () => WasmBackend.create({ kernels: 'scalar' }),
  js: async () => new JsBackend(),
};

for (const [name, make] of Object.entries(backends)) {
  describe(`linear (${name}) vs float64 reference`, () => {
    let be: WasmBackend | JsBackend;
    beforeAll(async () => {
      be = await make();
    });
    cases.forEach((c, i) => {
      it(title(c), () => {
        const d = build(c, 1000 + i);
        const { ref, refAbs } = reference(c, d);
        const sumR = c.ranks.reduce((a, b) => a + b, 0);
        const got = run(be, c, d);
        expectClose(got, ref, (j) => (c.k + sumR + 8) * EPS32 * refAbs[j] + 1e-30, `[${c.m},${c.k}]·[${c.n},${c.k}]ᵀ r=[${c.ranks}]`);
      });
    });
  });
}

describe('adapter off is exactly the base linear (wasm)', () => {
  for (const kernels of ['simd128', 'scalar'] as const) {
    it(`${kernels}: empty deltas bit-identical to plain linear; on ≠ off when B ≠ 0`, async () => {
      const be = await WasmBackend.create({ kernels });
      for (const c of [
        { m: 1, k: 37, n: 130 },
        { m: 5, k: 130, n: 37 },
        { m: 64, k: 65, n: 33 },
      ]) {
        const rand = rng(7);
        const x = be.upload(Tensor.from(randomF32(rand, c.m * c.k), [c.m, c.k], 'f32'));
        const w = be.upload(Tensor.from(randomF32(rand, c.n * c.k), [c.n, c.k], 'f32'));
        const bias = be.upload(Tensor.from(randomF32(rand, c.n), [c.n], 'f32'));
        const delta: LoRADelta = {
          a: be.upload(Tensor.from(randomF32(rand, c.k * 8), [c.k, 8], 'f32')),
          b: be.upload(Tensor.from(randomF32(rand, 8 * c.n), [8, c.n], 'f32')),
          scale: 2,
        };
        const plain = be.linear(x, w, bias, []);
        const on = be.linear(x, w, bias, [delta]);
        const off = be.linear(x, w, bias, []);
        expect(Buffer.from(off.storage.bytes()).equals(Buffer.from(plain.storage.bytes()))).toBe(true);
        expect(Buffer.from(on.storage.bytes()).equals(Buffer.from(off.storage.bytes()))).toBe(false);
        for (const t of [plain, on, off, x, w, bias, delta.a, delta.b]) t.dispose();
      }
    });
  }

  it('flipping on/off 10,000 times with forwards in between does not grow wasm memory', async () => {
    const be = await WasmBackend.create();
    const [m, k, n, r] = [3, 64, 48, 8];
    const rand = rng(11);
    const x = be.upload(Tensor.from(randomF32(rand, m * k), [m, k], 'f32'));
    const w = be.upload(Tensor.from(randomF32(rand, n * k), [n, k], 'f32'));
    const bias = be.upload(Tensor.from(randomF32(rand, n), [n], 'f32'));
    const delta: LoRADelta = {
      a: be.upload(Tensor.from(randomF32(rand, k * r), [k, r], 'f32')),
      b: be.upload(Tensor.from(randomF32(rand, r * n), [r, n], 'f32')),
      scale: 1,
    };
    // Warm up once in each state, then memory must stay put.
    be.linear(x, w, bias, [delta]).dispose();
    be.linear(x, w, bias, []).dispose();
    const before = be.runtime.memory.buffer.byteLength;
    const scratchBefore = be.scratchBytes;
    for (let i = 0; i < 10_000; i++) be.linear(x, w, bias, i % 2 ? [delta] : []).dispose();
    expect(be.runtime.memory.buffer.byteLength).toBe(before);
    expect(be.scratchBytes).toBe(scratchBefore);
  });

  it('accepts CPU inputs and x with leading batch dims', async () => {
    const be = await WasmBackend.create();
    const rand = rng(3);
    const x = randomF32(rand, 2 * 3 * 10);
    const w = randomF32(rand, 7 * 10);
    const y = be.linear(Tensor.from(x, [2, 3, 10], 'f32'), Tensor.from(w, [7, 10], 'f32'), undefined, []);
    expect(y.shape).toEqual([2, 3, 7]);
    const ref = refLinear(x, 6, 10, w, 7, undefined);
    expectClose(y.data, ref, (j) => 20 * EPS32 * 10, 'batch [2,3,10]');
    y.dispose();
  });

  it('rejects mismatched shapes with a typed error', async () => {
    const be = await WasmBackend.create();
    expect(() => be.linear(Tensor.zeros([2, 5], 'f32'), Tensor.zeros([3, 4], 'f32'), undefined, [])).toThrowError(
      /input features do not match the weight: expected 4, got 5/,
    );
  });
});
