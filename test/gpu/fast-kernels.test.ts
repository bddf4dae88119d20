// The fast linear kernels against the float64 reference: the GEMV (row blocks of 1/2/4/8, subgroupAdd and tree
// reductions, vec4 and scalar loads), the register-tiled GEMM (each tile S/M/L forced on small shapes, k and n
// not multiples of the tile, k % 4 = 0 or not), the k-split shrink (k > 256: ks > 1 partials summed by the
// consumer), f32 and bf16-pair W, stacked adapters with a lora bias, DoRA row scale. Also: `kernelFor` names the
// kernels that `stats.kernels` counts, a LoRA forward is ≤ 2 dispatches (one adapter), and the base path is
// batch-invariant (a row's bits do not depend on the other rows in the batch, within a route).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoRADelta } from '../../src/backends/backend.js';
import type { WebGPUBackend } from '../../src/backends/webgpu/index.js';
import { Tensor } from '../../src/tensor.js';
import { gpuBackend } from './env.js';
import { compare, refLinear } from './golden.js';

function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
}
function rand(shape: number[], seed: number): Tensor<'f32'> {
  const r = rng(seed);
  return Tensor.f32(Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => r()), shape);
}
/** f32 → bf16 by truncation (the reference reads the same bf16 values, so rounding mode does not matter). */
const toBf16 = (t: Tensor<'f32'>) => Tensor.from(Uint16Array.from(new Uint32Array(Float32Array.from(t.data).buffer), (u) => u >>> 16), [...t.shape], 'bf16');
const tol = (ref: Float64Array, k: number) => 1e-4 * Math.max(1, ...Array.from(ref, Math.abs)) * Math.sqrt(k / 64 + 1);
const bits = (a: { buffer: ArrayBufferLike; byteOffset: number; length: number }) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

const MS = [1, 2, 3, 5, 8, 17, 64, 65];
// k: scalar loads (37), vec4 loads with k % 16 ≠ 0 (68), k-split shrink (ks = 3 at small m) vec4 (520) and scalar (517).
const KN = [
  [37, 67],
  [68, 33],
  [520, 65],
  [517, 30],
];

const bes: Record<string, WebGPUBackend> = {};
beforeAll(async () => {
  bes.default = await gpuBackend(); // subgroups when the adapter has them (SwiftShader: yes, size 4)
  bes.tree = await gpuBackend({ subgroups: false });
  bes.gemv16 = await gpuBackend({ gemvMaxM: 16, subgroups: false });
  for (const t of ['S', 'M', 'L'] as const) bes[t] = await gpuBackend({ gemvMaxM: 0, gemmTile: t });
});
afterAll(() => Object.values(bes).forEach((b) => b.dispose()));

function deltas(k: number, n: number, seed: number, stacked: boolean): LoRADelta[] {
  const one: LoRADelta = { a: rand([k, 5], seed + 1), b: rand([5, n], seed + 2), scale: 0.75 };
  if (!stacked) return [one];
  return [one, { a: rand([k, 3], seed + 3), b: rand([3, n], seed + 4), scale: -1.5, bias: rand([n], seed + 5) }];
}

// Each backend on the shapes that reach its own paths (SwiftShader is slow: the default backend takes them all).
const PLAN: [string, number[], number[][]][] = [
  ['default', MS, KN],
  ['tree', [1, 2, 3, 5, 8], [KN[1], KN[3]]],
  ['gemv16', [9, 16], [KN[0], KN[2]]],
  ['S', [1, 17, 33], [KN[0], KN[2]]],
  ['M', [5, 64, 65], [KN[1], KN[3]]],
  ['L', [2, 65, 130], [KN[0], KN[2]]],
];

describe.each(PLAN)('backend %s', (name, ms, kns) => {
  for (const [k, n] of kns) {
    it(`m ∈ {${ms}} k=${k} n=${n}: f32 and bf16 W, off / one adapter / stacked + lora bias + DoRA`, async () => {
      const be = bes[name];
      const w = rand([n, k], k + n);
      const wb = toBf16(w);
      const Wf = be.upload(w), Wb = be.upload(wb, { keepBf16: true });
      const bias = rand([n], 7);
      const rs = Tensor.f32(Array.from({ length: n }, (_, i) => 0.5 + (i % 5) / 5), [n]);
      for (const m of ms) {
        const x = rand([m, k], 100 * m + k);
        for (const [wname, W, wref] of [['f32', Wf, w], ['bf16', Wb, wb]] as const) {
          for (const [dname, ds, rowScale] of [['off', [], undefined], ['one', deltas(k, n, m, false), undefined], ['stacked', deltas(k, n, m + 50, true), rs]] as const) {
            const y = be.linear(x, W, bias, ds, rowScale);
            const ref = refLinear(x, wref, bias, ds, rowScale);
            const bad = compare(await y.read(), ref, tol(ref, k), y.shape);
            expect(bad, `m=${m} W ${wname} ${dname}: ${bad}`).toBeUndefined();
            y.dispose();
          }
        }
      }
    });
  }
});

describe('kernel reporting and dispatch counts', () => {
  it('kernelFor names the kernels stats.kernels counts; one adapter = 2 dispatches at every m; off = 1', () => {
    const be = bes.default;
    const k = 68, n = 33;
    const W = be.upload(rand([n, k], 1));
    const d = deltas(k, n, 3, false);
    for (const m of MS) {
      for (const ds of [[], d]) {
        const want = be.kernelFor('linear', m, k, n, { ranks: ds.map((x) => x.a.shape[1]) });
        const before = { ...be.stats.kernels };
        const dispatches = be.stats.dispatches;
        be.linear(rand([m, k], m), W, undefined, ds).dispose();
        const ran = Object.entries(be.stats.kernels).filter(([id, c]) => c !== (before[id] ?? 0)).map(([id]) => id).sort();
        expect(ran).toEqual([...want.kernels].sort());
        expect(be.stats.dispatches - dispatches).toBe(want.dispatches);
        expect(want.dispatches).toBe(ds.length + 1);
        expect(want.route).toBe(m <= be.gemvMaxM ? 'gemv' : 'gemm');
        if (want.route === 'gemv') expect(want.subgroups).toBe(be.subgroups);
      }
    }
    // The tree backend never reports subgroups.
    expect(bes.tree.kernelFor('linear', 1, 64, 64).kernels[0]).toContain('tree');
  });

  // The cases worked by hand from the H200 sweep behind gemmTileFor (S/M/L at full occupancy ≈ 15 / 26.5 / 33
  // TFLOP/s; a 64-column group per workgroup; 132 groups fill the GPU).
  it.each([
    // LM head, m = 16: L would pad 112 of its 128 rows; S pads 16 of 32 and still has 2374 groups.
    [16, 896, 151936, 'S'],
    // k = n = 4096, m = 64: 128 groups of S (15 × 0.97) beat 64 of M (26.5 × 64/132 = 12.8).
    [64, 4096, 4096, 'S'],
    // m = 128: M has 128 groups (26.5 × 128/132 = 25.7) > S 15 > L with 64 (33 × 64/132 = 16).
    [128, 4096, 4096, 'M'],
    // m = 256: L has 128 groups (33 × 128/132 = 32) > M 26.5.
    [256, 4096, 4096, 'L'],
    // n = 896 (14 column groups), m = 512: M has 112 groups (26.5 × 112/132 = 22.5) > L with 56 (14) > S 15.
    [512, 4864, 896, 'M'],
  ])('the GEMM tile for m=%i k=%i n=%i is %s', (m, k, n, tile) => {
    const want = bes.default.kernelFor('linear', m, k, n);
    expect(want.route).toBe('gemm');
    expect(want.kernels.join()).toContain(`tile=${tile},`);
  });

  it('gpuTime reports GPU time of the recorded passes when timestamp-query exists', async () => {
    const be = bes.default;
    const W = be.upload(rand([64, 64], 2));
    const r = await be.gpuTime(async () => {
      const y = be.linear(rand([3, 64], 3), W, undefined, []);
      await y.read();
      y.dispose();
    });
    if (be.ctx.timestamps) {
      expect(r.passes).toBeGreaterThanOrEqual(1);
      expect(r.ms).toBeGreaterThanOrEqual(0);
    } else expect(r.ms).toBeUndefined();
  });

  it('gpuTime stamps at most maxPasses passes and counts the rest as untimed', async () => {
    const be = bes.default;
    const W = be.upload(rand([64, 64], 2));
    const r = await be.gpuTime(
      async () => {
        for (let i = 0; i < 3; i++) {
          const y = be.linear(rand([3, 64], 3 + i), W, undefined, []);
          await y.read();
          y.dispose();
        }
      },
      { maxPasses: 2 },
    );
    if (be.ctx.timestamps) expect([r.passes, r.untimed]).toEqual([2, 1]);
    else expect(r.ms).toBeUndefined();
  });
});

describe('batch invariance (base path)', () => {
  it.each(['default', 'tree', 'S', 'L'])('%s: a row gives the same bits whatever the batch around it (within a route)', async (name) => {
    const be = bes[name];
    const k = 68, n = 67;
    const W = be.upload(rand([n, k], 9));
    const xs = rand([65, k], 10);
    const gemv = be.gemvMaxM > 0;
    const sizes = gemv ? [1, 2, 3, 5, 8].filter((m) => m <= be.gemvMaxM) : [1, 17, 64, 65];
    const rowsOf = async (m: number) => {
      const x = Tensor.f32(xs.data.slice(0, m * k), [m, k]);
      const y = be.linear(x, W, undefined, []);
      const out = await y.read();
      y.dispose();
      return out;
    };
    const full = await rowsOf(sizes[sizes.length - 1]);
    for (const m of sizes) {
      const part = await rowsOf(m);
      expect(bits(part), `m=${m}`).toEqual(bits(full.subarray(0, m * n)));
    }
  });
});
