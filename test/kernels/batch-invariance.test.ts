import { beforeAll, describe, expect, it } from 'vitest';
import type { Backend, LoRADelta, QuantizedWeight } from '../../src/backends/backend.js';
import { JsBackend } from '../../src/backends/js.js';
import { WasmBackend } from '../../src/backends/wasm.js';
import { Linear } from '../../src/nn/linear.js';
import { QuantizedLinear } from '../../src/nn/quantized-linear.js';
import { Tensor } from '../../src/tensor.js';
import { randomF32, rng } from './helpers.js';

/**
 * Batch invariance: a row's output never depends on how many rows ride with it. Every row of a batch of
 * m = 5, 9, 17 (the GEMV m ≤ 4 chunks, the small-m and the packed-GEMM paths) must equal, bit for bit, the same
 * row computed alone (m = 1), and the first four rows computed as a batch of 4. f32, bf16, 4-bit and 8-bit W, with and
 * without LoRA deltas (+ lora bias and a DoRA row scale). k crosses the GEMM's k-block (512) and leaves tails
 * (k % 8, n % 16), and a k of 32768 cuts a batch into row blocks of 8. The reference is the same backend on m = 1: what speculative decoding compares against.
 * On wasm the scalar twins are also checked against the SIMD kernels (f32 and bf16: same order, same bits).
 */

type WeightKind = 'f32' | 'bf16' | 'q4' | 'q8';
interface Case {
  kind: WeightKind;
  k: number;
  n: number;
  ranks: number[];
  rowScale: boolean;
}
const cases: Case[] = [];
for (const kind of ['f32', 'bf16', 'q4', 'q8'] as const) {
  // Quantised k: whole groups, across the quantised GEMM's k-block (512) with a partial last block.
  const k = kind === 'q4' ? 576 : kind === 'q8' ? 640 : 1030;
  cases.push({ kind, k, n: 45, ranks: [], rowScale: false });
  cases.push({ kind, k, n: 45, ranks: [8], rowScale: false });
  cases.push({ kind, k, n: 37, ranks: [16, 3], rowScale: true });
  // k = 32768: the GEMMs take 8 rows of x per pass (1 MiB blocks, linear.h's f32_gemm_row_block), so m = 9, 17 and
  // 40 run as several blocks, the last one short (one row at m = 9 and 17); n = 13 leaves a column tail.
  cases.push({ kind, k: 32768, n: 13, ranks: [4], rowScale: false });
  // Short rows (≤ 2560 bytes, stored unpadded): the m = 1 GEMV loads the next tile ahead (linear.h); n = 45 gives
  // several whole tiles, the last one touching its own rows, and a column tail.
  if (kind === 'f32' || kind === 'bf16') cases.push({ kind, k: kind === 'f32' ? 202 : 600, n: 45, ranks: [], rowScale: false });
  // Rows longer than 2048 columns: the m ≤ 4 LoRA epilogue takes four rows of B per pass (linear.h
  // f32_epilogue_rows), r = 18 leaving two for the one-row pass; a batch sweeps B in packed tiles.
  cases.push({ kind, k: 128, n: 2310, ranks: [18, 3], rowScale: true });
}

interface Layer {
  project(x: Tensor, deltas: readonly LoRADelta[], rowScale?: Tensor): Tensor;
}

function build(be: Backend, c: Case, seed: number): { layer: Layer; deltas: LoRADelta[]; rowScale?: Tensor } {
  const rand = rng(seed);
  const w = Tensor.from(randomF32(rand, c.n * c.k), [c.n, c.k], 'f32');
  const bias = Tensor.from(randomF32(rand, c.n), [c.n], 'f32');
  const dense = new Linear(w, bias, { backend: be, weightDtype: c.kind === 'bf16' ? 'bf16' : 'f32' });
  let layer: Layer = dense;
  if (c.kind === 'q4' || c.kind === 'q8') {
    const q = QuantizedLinear.fromLinear(dense, c.kind === 'q4' ? { bits: 4, groupSize: 64 } : { bits: 8, groupSize: 128 });
    const qw: QuantizedWeight = q.q;
    layer = { project: (x, d, rs) => be.quantizedLinear(x, qw, bias, d, rs) };
  }
  const up = (a: Float32Array<ArrayBuffer>, shape: number[]) => be.upload(Tensor.from(a, shape, 'f32'));
  const deltas = c.ranks.map((r, i) => ({
    a: up(randomF32(rand, c.k * r), [c.k, r]),
    b: up(randomF32(rand, r * c.n), [r, c.n]),
    scale: 0.75 + i,
    ...(i === 1 ? { bias: up(randomF32(rand, c.n), [c.n]) } : {}),
  }));
  const rowScale = c.rowScale ? up(Float32Array.from(randomF32(rand, c.n), (v) => 0.5 + Math.abs(v)), [c.n]) : undefined;
  return { layer, deltas, rowScale };
}

function rows(be: Backend, l: { layer: Layer; deltas: LoRADelta[]; rowScale?: Tensor }, x: Float32Array, k: number, from: number, count: number): Uint32Array {
  const xt = Tensor.from(x.slice(from * k, (from + count) * k), [count, k], 'f32');
  const y = l.layer.project(xt, l.deltas, l.rowScale);
  const out = new Uint32Array(Float32Array.from(y.data as Float32Array).buffer);
  y.dispose();
  return out;
}

/** First differing element, printed with its row and column, or undefined when the bits agree. */
function firstDiff(got: Uint32Array, ref: Uint32Array, n: number): string | undefined {
  for (let i = 0; i < ref.length; i++) {
    if (got[i] !== ref[i]) {
      const f = (u: number) => new Float32Array(Uint32Array.of(u).buffer)[0];
      return `row ${Math.floor(i / n)} col ${i % n}: alone ${f(ref[i])}, in batch ${f(got[i])}`;
    }
  }
  return undefined;
}

const backends: Record<string, () => Promise<Backend>> = {
  'wasm simd128': () => WasmBackend.create({ kernels: 'simd128' }),
  'wasm scalar': () => WasmBackend.create({ kernels: 'scalar' }),
  js: async () => new JsBackend(),
};

for (const [name, make] of Object.entries(backends)) {
  describe(`batch invariance (${name})`, () => {
    let be: Backend;
    beforeAll(async () => {
      be = await make();
    });
    cases.forEach((c, ci) => {
      const title = `${c.kind} W, k=${c.k} n=${c.n} r=[${c.ranks}]${c.rowScale ? ' rowScale' : ''}: rows of m = 4, 5, 9, 17, 40 equal each row alone`;
      it(title, () => {
        const l = build(be, c, 100 + ci);
        // m = 40: above 32 the f32 GEMM takes longer k-blocks (linear.h), the same order.
        const x = randomF32(rng(7 + ci), 40 * c.k);
        const alone: Uint32Array[] = [];
        for (let i = 0; i < 40; i++) alone.push(rows(be, l, x, c.k, i, 1));
        for (const m of [4, 5, 9, 17, 40]) {
          const got = rows(be, l, x, c.k, 0, m);
          const ref = new Uint32Array(m * c.n);
          for (let i = 0; i < m; i++) ref.set(alone[i], i * c.n);
          expect(firstDiff(got, ref, c.n), `m=${m}`).toBeUndefined();
        }
        // A row's bits do not depend on its position in the batch either.
        const mid = rows(be, l, x, c.k, 3, 9);
        const ref = new Uint32Array(9 * c.n);
        for (let i = 0; i < 9; i++) ref.set(alone[3 + i], i * c.n);
        expect(firstDiff(mid, ref, c.n), 'rows 3..11').toBeUndefined();
      });
    });
  });
}

describe('SIMD128 kernels equal their scalar twins bit for bit (same k order)', () => {
  for (const c of cases.filter((q) => q.kind === 'f32' || q.kind === 'bf16')) {
    it(`${c.kind} W, k=${c.k} n=${c.n} r=[${c.ranks}], m = 1, 3, 9`, async () => {
      const simd = await WasmBackend.create({ kernels: 'simd128' });
      const scalar = await WasmBackend.create({ kernels: 'scalar' });
      const x = randomF32(rng(3), 9 * c.k);
      for (const m of [1, 3, 9]) {
        const a = rows(simd, build(simd, c, 5), x, c.k, 0, m);
        const b = rows(scalar, build(scalar, c, 5), x, c.k, 0, m);
        expect(firstDiff(a, b, c.n), `m=${m}`).toBeUndefined();
      }
    });
  }
});

describe('long rows on one thread (the m ≤ 4 LoRA epilogue takes four rows of B per pass) equal the scalar twin and the batch', () => {
  // One thread: a split layer's chunks are shorter than 2048 columns and keep the one-row passes.
  for (const kind of ['f32', 'bf16', 'q4'] as const) {
    const c: Case = { kind, k: 128, n: 2310, ranks: [18, 3], rowScale: true };
    it(`${kind} W, k=${c.k} n=${c.n} r=[${c.ranks}]: m = 1…4 alone, in batches of 4 and 9, and the scalar twin`, async () => {
      const simd = await WasmBackend.create({ kernels: 'simd128', threads: 1 });
      const scalar = await WasmBackend.create({ kernels: 'scalar', threads: 1 });
      const l = build(simd, c, 11);
      const x = randomF32(rng(13), 9 * c.k);
      const alone: Uint32Array[] = [];
      for (let i = 0; i < 9; i++) alone.push(rows(simd, l, x, c.k, i, 1));
      for (const m of [2, 3, 4, 9]) {
        const ref = new Uint32Array(m * c.n);
        for (let i = 0; i < m; i++) ref.set(alone[i], i * c.n);
        expect(firstDiff(rows(simd, l, x, c.k, 0, m), ref, c.n), `m=${m}`).toBeUndefined();
      }
      if (kind !== 'q4') expect(firstDiff(rows(scalar, build(scalar, c, 11), x, c.k, 0, 1), alone[0], c.n), 'scalar twin').toBeUndefined();
    });
  }
});

describe('quantised rows whose products are all zero in a group (signed zeros) stay batch-invariant (wasm simd128)', () => {
  // W's first group of every other row is constant (codes all 0), x is negative there: every product of that group is
  // −0. The GEMM starts a group's sums from the first product, the GEMV from 0 + it; the bits must still agree.
  for (const bits of [4, 8] as const) {
    it(`${bits}-bit, group 64`, async () => {
      const be = await WasmBackend.create({ kernels: 'simd128' });
      const k = 192, n = 12, rand = rng(77);
      const w = randomF32(rand, n * k);
      for (let j = 0; j < n; j += 2) w.fill(0.25, j * k, j * k + 64);
      const q = QuantizedLinear.fromLinear(new Linear(Tensor.from(w, [n, k], 'f32'), undefined, { backend: be }), { bits, groupSize: 64 });
      const x = randomF32(rand, 9 * k);
      for (let i = 0; i < 9; i++) for (let p = 0; p < 64; p++) x[i * k + p] = -Math.abs(x[i * k + p]) - 0.5;
      const run = (from: number, count: number) => {
        const y = be.quantizedLinear(Tensor.from(x.slice(from * k, (from + count) * k), [count, k], 'f32'), q.q, undefined, []);
        const out = new Uint32Array(Float32Array.from(y.data as Float32Array).buffer);
        y.dispose();
        return out;
      };
      const ref = new Uint32Array(9 * n);
      for (let i = 0; i < 9; i++) ref.set(run(i, 1), i * n);
      for (const m of [3, 9]) expect(firstDiff(run(0, m), ref.subarray(0, m * n), n), `m=${m}`).toBeUndefined();
    });
  }
});

describe('the batched LoRA epilogue (B swept in chunks of packed columns) equals the scalar twin bit for bit', () => {
  // r = 200: 80 columns per packed chunk, so n = 200 crosses two chunk edges and ends in a part-chunk with a tail
  // of n % 8; r = 2056: too large for one 8-column panel, B streamed by rows instead. f32, bf16 and 4-bit W.
  for (const [k, n, r] of [[64, 200, 200], [64, 12, 2056]] as const) {
    for (const kind of ['f32', 'bf16', 'q4'] as const) {
      it(`${kind} W, k=${k} n=${n} r=${r}, two terms, lora bias and row scale, m = 5, 9`, async () => {
        const simd = await WasmBackend.create({ kernels: 'simd128' });
        const scalar = await WasmBackend.create({ kernels: 'scalar' });
        const c: Case = { kind, k, n, ranks: [r, 3], rowScale: true };
        const x = randomF32(rng(21), 9 * k);
        for (const m of [5, 9]) {
          const a = rows(simd, build(simd, c, 13), x, k, 0, m);
          const b = rows(scalar, build(scalar, c, 13), x, k, 0, m);
          if (kind === 'q4') {
            // The 4-bit twins differ in order (fused per-group sums vs dequantised W); the epilogue is checked
            // against the SIMD GEMV path instead: each row alone (m = 1 takes the row-streaming epilogue).
            const s = build(simd, c, 13);
            const alone = new Uint32Array(m * n);
            for (let i = 0; i < m; i++) alone.set(rows(simd, s, x, k, i, 1), i * n);
            expect(firstDiff(a, alone, n), `m=${m}`).toBeUndefined();
          } else expect(firstDiff(a, b, n), `m=${m}`).toBeUndefined();
        }
      });
    }
  }
});
