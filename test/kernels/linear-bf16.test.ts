import { beforeAll, describe, expect, it } from 'vitest';
import type { LoRADelta } from '../../src/backends/backend.js';
import { refLinear } from '../../src/backends/js.js';
import { WasmBackend } from '../../src/backends/wasm.js';
import { Tensor } from '../../src/tensor.js';
import { EPS32, expectClose, randomF32, rng } from './helpers.js';

/**
 * linear with a bf16 W (cpp/linear_bf16.h, SIMD128 and scalar twins) against the float64 reference on the decoded W.
 * W is random bf16 bit patterns; decoding here is independent of the library: bits << 16 read as an f32.
 * Tolerance as for the f32 kernel: |got − ref| ≤ (k + Σr + 8)·2⁻²³·ref_abs (ref_abs: the reference on |operands|).
 */

const decode = (bits: Uint16Array) => new Float32Array(Uint32Array.from(bits, (b) => b << 16).buffer);

function randomBf16(rand: () => number, n: number): Uint16Array<ArrayBuffer> {
  const f = randomF32(rand, n);
  return Uint16Array.from(new Uint32Array(f.buffer), (u) => u >>> 16); // truncation: any bf16 pattern will do
}

interface Case {
  m: number;
  k: number;
  n: number;
  ranks: number[];
  bias: boolean;
  loraBias?: boolean;
  rowScale?: boolean;
}

const cases: Case[] = [];
// m = 1…4 (GEMV: 8-, 4-, 2- and 1-row tiles, k % 8 tails), m = 5…8 (GEMV on 4-row chunks) and m > 8 (packed GEMM
// on widened strips).
for (const m of [1, 2, 3, 4, 5, 8, 64])
  for (const [k, n] of [[37, 130], [3, 5], [8, 8], [15, 17], [16, 16], [130, 37], [1031, 9]] as const)
    cases.push({ m, k, n, ranks: [], bias: m % 2 === 1 });
for (const m of [1, 2, 4, 5, 64]) for (const r of [1, 8]) cases.push({ m, k: 37, n: 130, ranks: [r], bias: true });
cases.push({ m: 3, k: 67, n: 45, ranks: [8, 3], bias: false, loraBias: true, rowScale: true });
cases.push({ m: 1, k: 1030, n: 19, ranks: [16], bias: true, loraBias: true, rowScale: true });
cases.push({ m: 7, k: 45, n: 19, ranks: [4], bias: true, loraBias: true, rowScale: true }); // 4 + 3 row chunks, LoRA pass
cases.push({ m: 6, k: 16, n: 9, ranks: [], bias: true, rowScale: true });
cases.push({ m: 9, k: 2100, n: 9, ranks: [4], bias: true }); // crosses a k-block
cases.push({ m: 100, k: 40, n: 12, ranks: [2], bias: true, rowScale: true }); // crosses an m-block

const abs = (a: ArrayLike<number>) => Float64Array.from(a, Math.abs);

for (const kernels of ['simd128', 'scalar'] as const) {
  describe(`linear with a bf16 W (wasm ${kernels}) vs float64 reference`, () => {
    let be: WasmBackend;
    beforeAll(async () => {
      be = await WasmBackend.create({ kernels });
    });
    cases.forEach((c, i) => {
      it(`m=${c.m} k=${c.k} n=${c.n} r=[${c.ranks}] bias=${c.bias} loraBias=${!!c.loraBias} rowScale=${!!c.rowScale}`, () => {
        const rand = rng(5000 + i);
        const x = randomF32(rand, c.m * c.k);
        const wBits = randomBf16(rand, c.n * c.k);
        const bias = c.bias ? randomF32(rand, c.n) : undefined;
        const rowScale = c.rowScale ? Float32Array.from(randomF32(rand, c.n), (v) => 0.5 + Math.abs(v)) : undefined;
        const ds = c.ranks.map((r, d) => ({ a: randomF32(rand, c.k * r), b: randomF32(rand, r * c.n), r, scale: 0.5 + d, bias: c.loraBias ? randomF32(rand, c.n) : undefined }));

        const w = be.upload(Tensor.from(wBits, [c.n, c.k], 'bf16'), { keepBf16: true });
        expect(w.dtype).toBe('bf16');
        expect(w.device).toBe('wasm');
        const deltas: LoRADelta[] = ds.map((q) => ({
          a: Tensor.from(q.a, [c.k, q.r], 'f32'),
          b: Tensor.from(q.b, [q.r, c.n], 'f32'),
          scale: q.scale,
          bias: q.bias && Tensor.from(q.bias, [c.n], 'f32'),
        }));
        const y = be.linear(Tensor.from(x, [c.m, c.k], 'f32'), w, bias && Tensor.from(bias, [c.n], 'f32'), deltas, rowScale && Tensor.from(rowScale, [c.n], 'f32'));
        expect(y.shape).toEqual([c.m, c.n]);
        const got = Float32Array.from(y.data as Float32Array);
        y.dispose();
        w.dispose();

        const wf = decode(wBits);
        const ref = refLinear(x, c.m, c.k, wf, c.n, bias, ds, rowScale);
        const refAbs = refLinear(abs(x), c.m, c.k, abs(wf), c.n, bias && abs(bias), ds.map((q) => ({ ...q, a: abs(q.a), b: abs(q.b), bias: q.bias && abs(q.bias) })), rowScale && abs(rowScale));
        const sumR = c.ranks.reduce((a, b) => a + b, 0);
        expectClose(got, ref, (j) => (c.k + sumR + 8) * EPS32 * refAbs[j] + 1e-30, `bf16 [${c.m},${c.k}]·[${c.n},${c.k}]ᵀ`);
      });
    });
  });
}

describe('bf16 W on wasm: storage and the toggle', () => {
  it('keepBf16 keeps 2 bytes per weight; without it the upload widens to f32 exactly', async () => {
    const be = await WasmBackend.create();
    const bits = randomBf16(rng(1), 12 * 34);
    const kept = be.upload(Tensor.from(bits, [12, 34], 'bf16'), { keepBf16: true });
    expect(kept.storage.byteLength).toBe(12 * 34 * 2);
    expect(Array.from(kept.data as Uint16Array)).toEqual(Array.from(bits));
    expect(be.upload(kept, { keepBf16: true })).toBe(kept); // idempotent
    const widened = be.upload(Tensor.from(bits, [12, 34], 'bf16'));
    expect(widened.dtype).toBe('f32');
    expect(Array.from(widened.data as Float32Array)).toEqual(Array.from(decode(bits)));
    // keepBf16 does not touch other dtypes.
    expect(be.upload(Tensor.from(new Float32Array(4), [4], 'f32'), { keepBf16: true }).dtype).toBe('f32');
  });

  for (const kernels of ['simd128', 'scalar'] as const) {
    it(`${kernels}: off is bit-identical to the plain bf16 linear, on ≠ off; 10,000 flips do not grow memory`, async () => {
      const be = await WasmBackend.create({ kernels });
      for (const [m, k, n] of [[1, 37, 130], [3, 64, 33], [9, 130, 37]]) {
        const rand = rng(m * 1000 + k);
        const x = be.upload(Tensor.from(randomF32(rand, m * k), [m, k], 'f32'));
        const w = be.upload(Tensor.from(randomBf16(rand, n * k), [n, k], 'bf16'), { keepBf16: true });
        const bias = be.upload(Tensor.from(randomF32(rand, n), [n], 'f32'));
        const delta: LoRADelta = { a: be.upload(Tensor.from(randomF32(rand, k * 8), [k, 8], 'f32')), b: be.upload(Tensor.from(randomF32(rand, 8 * n), [8, n], 'f32')), scale: 2 };
        const plain = be.linear(x, w, bias, []);
        const on = be.linear(x, w, bias, [delta]);
        const before = be.runtime.memory.buffer.byteLength;
        for (let i = 0; i < 10_000; i++) be.linear(x, w, bias, i % 2 ? [delta] : []).dispose();
        expect(be.runtime.memory.buffer.byteLength).toBe(before);
        const off = be.linear(x, w, bias, []);
        expect(Buffer.from(off.storage.bytes()).equals(Buffer.from(plain.storage.bytes()))).toBe(true);
        expect(Buffer.from(on.storage.bytes()).equals(Buffer.from(off.storage.bytes()))).toBe(false);
        for (const t of [plain, on, off, x, w, bias, delta.a, delta.b]) t.dispose();
      }
    });
  }
});

// The packed GEMM (m > 8) on every path of its driver: one k-block with the sums reduced in registers (k ≤ 1024),
// two and three k-blocks (lanes carried through scratch), k % 4 tails, k < 4 (no packed part at all), n % 4 tail
// columns, odd m (a last unpaired row), with and without the epilogue. The scalar twin is the same order written
// as plain loops; a row must also equal itself computed alone (m = 1, the GEMV path).
describe('bf16 W, packed GEMM: SIMD128 = scalar twin bit for bit, rows batch-invariant', () => {
  const shapes: [number, number, number][] = [[16, 256, 704], [17, 704, 256], [9, 1030, 13], [12, 2100, 8], [10, 3, 6], [64, 37, 130], [33, 256, 2048]];
  for (const [m, k, n] of shapes) {
    for (const withEp of [false, true]) {
      it(`m=${m} k=${k} n=${n} ${withEp ? 'bias + LoRA r=4' : 'no epilogue'}`, async () => {
        const simd = await WasmBackend.create({ kernels: 'simd128' });
        const scalar = await WasmBackend.create({ kernels: 'scalar' });
        const rand = rng(m * 7919 + k * 31 + n);
        const x = randomF32(rand, m * k);
        const wBits = randomBf16(rand, n * k);
        const bias = withEp ? randomF32(rand, n) : undefined;
        const a = randomF32(rand, k * 4);
        const b = randomF32(rand, 4 * n);
        const run = (be: WasmBackend, rows: number, x0: number) => {
          const w = be.upload(Tensor.from(wBits, [n, k], 'bf16'), { keepBf16: true });
          const deltas: LoRADelta[] = withEp ? [{ a: Tensor.from(a, [k, 4], 'f32'), b: Tensor.from(b, [4, n], 'f32'), scale: 0.5 }] : [];
          const y = be.linear(Tensor.from(x.slice(x0 * k, (x0 + rows) * k), [rows, k], 'f32'), w, bias && Tensor.from(bias, [n], 'f32'), deltas);
          const bits = new Uint32Array(Float32Array.from(y.data as Float32Array).buffer);
          y.dispose();
          w.dispose();
          return bits;
        };
        const got = run(simd, m, 0);
        expect(Buffer.from(got.buffer).equals(Buffer.from(run(scalar, m, 0).buffer))).toBe(true);
        for (const i of [0, m - 1]) expect(Array.from(run(simd, 1, i)), `row ${i} alone`).toEqual(Array.from(got.subarray(i * n, (i + 1) * n)));
        // And the values: within the f32 bound of the float64 reference on the decoded W.
        const ref = refLinear(x, m, k, decode(wBits), n, bias, withEp ? [{ a, b, r: 4, scale: 0.5 }] : [], undefined);
        const refAbs = refLinear(abs(x), m, k, abs(decode(wBits)), n, bias && abs(bias), withEp ? [{ a: abs(a), b: abs(b), r: 4, scale: 0.5 }] : [], undefined);
        expectClose(new Float32Array(got.buffer), ref, (j) => (k + 4 + 8) * EPS32 * refAbs[j] + 1e-30, `bf16 [${m},${k}]·[${n},${k}]ᵀ`);
      });
    }
  }
});

// WasmBackend.linear calls the kernel directly for a plain layer whose operands are all resident (a model's forward);
// the same layer with x on the CPU goes through the general staging path. Both must give the same bits.
describe('wasm linear: the resident fast path equals the staged path bit for bit', () => {
  for (const wDtype of ['f32', 'bf16'] as const)
    for (const m of [1, 5, 16])
      for (const withBias of [false, true])
        it(`${wDtype} W, m=${m}, bias=${withBias}`, async () => {
          const be = await WasmBackend.create({ threads: 1 });
          const [k, n] = [70, 37];
          const rand = rng(m * 100 + k + (withBias ? 1 : 0));
          const xCpu = Tensor.from(randomF32(rand, m * k), [m, k], 'f32');
          const bits = randomBf16(rand, n * k);
          const w = wDtype === 'bf16' ? be.upload(Tensor.from(bits, [n, k], 'bf16'), { keepBf16: true }) : be.upload(Tensor.from(decode(bits), [n, k], 'f32'));
          const bias = withBias ? be.upload(Tensor.from(randomF32(rand, n), [n], 'f32')) : undefined;
          const xRes = be.upload(xCpu);
          const fast = be.linear(xRes, w, bias, []);
          const staged = be.linear(xCpu, w, bias, []);
          expect(fast.shape).toEqual([m, n]);
          expect(Buffer.from(fast.storage.bytes()).equals(Buffer.from(staged.storage.bytes()))).toBe(true);
          // And the value: the float64 reference within the f32 bound.
          const ref = refLinear(xCpu.data as Float32Array, m, k, decode(bits), n, bias && (bias.data as Float32Array), [], undefined);
          const refAbs = refLinear(abs(xCpu.data as Float32Array), m, k, abs(decode(bits)), n, bias && abs(bias.data as Float32Array), [], undefined);
          expectClose(Float32Array.from(fast.data as Float32Array), ref, (j) => (k + 8) * EPS32 * refAbs[j] + 1e-30, 'fast path');
          for (const t of [fast, staged, xRes, w, ...(bias ? [bias] : [])]) t.dispose();
        });
});
