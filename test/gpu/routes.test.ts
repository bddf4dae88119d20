// Per-request adapters on WebGPU (per-group dispatch): every row of a mixed batch ≈ the js float64 backend's row
// (which equals the formula, test/lora/routes.test.ts), null rows ≈ the base; tolerance 1e-4·(1 + |y|). Rows that
// stack a DoRA adapter with LoRA adapters (before and after it: each DoRA pass scales what came before) too.
import { expect, test } from 'vitest';
import { JsBackend } from '../../src/backends/js.js';
import { LoRALinear } from '../../src/lora/lora-linear.js';
import { Linear } from '../../src/nn/linear.js';
import { QuantizedLinear } from '../../src/nn/quantized-linear.js';
import { prng, randomTensor } from '../lora/helpers.js';
import { gpuBackend } from './env.js';

test('routed rows on WebGPU ≈ the float64 routed rows (m = 6, and m = 17 through the GEMM)', async () => {
  const gpu = await gpuBackend();
  const [k, n] = [37, 29];
  for (const m of [6, 17]) {
    const rand = prng(m);
    const w = randomTensor(rand, [n, k]);
    const bias = randomTensor(rand, [n]);
    const init = [
      { name: 'a', a: randomTensor(rand, [k, 4]), b: randomTensor(rand, [4, n]), scale: 2 },
      { name: 'b', a: randomTensor(rand, [k, 2]), b: randomTensor(rand, [2, n]), scale: 0.5, bias: randomTensor(rand, [n]) },
      { name: 'd', a: randomTensor(rand, [k, 3]), b: randomTensor(rand, [3, n]), scale: 1, magnitude: randomTensor(rand, [n], 3) },
    ];
    const layers = [gpu, new JsBackend()].map((backend) => {
      const l = LoRALinear.fromBase(new Linear(w, bias, { backend }));
      for (const ad of init) l.addAdapter(ad);
      return l;
    });
    const route = Array.from({ length: m }, (_, i) => [null, 'a', ['a', 'b'], 'd', 'b', ['a', 'd'], ['d', 'b', 'a']][i % 7] as string | null | string[]);
    const x = randomTensor(rand, [m, k]);
    const got = (await layers[0].forward(x, { adapters: route }).read()) as Float32Array;
    const ref = layers[1].forward(x, { adapters: route }).data as Float32Array;
    ref.forEach((v, i) => expect(Math.abs(got[i] - v), `m=${m} [${i}]`).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(v))));
    // One group only (the whole batch stacks DoRA between two LoRAs): the path without gather/scatter.
    const all = Array(m).fill(['b', 'd', 'a']);
    const got2 = (await layers[0].forward(x, { adapters: all }).read()) as Float32Array;
    const ref2 = layers[1].forward(x, { adapters: all }).data as Float32Array;
    ref2.forEach((v, i) => expect(Math.abs(got2[i] - v), `m=${m} stacked [${i}]`).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(v))));
    // And the stacked DoRA row differs from the same row without the DoRA (the pass is not a no-op).
    const noDora = layers[1].forward(x, { adapters: Array(m).fill(['b', 'a']) }).data as Float32Array;
    expect(ref2.some((v, i) => Math.abs(v - noDora[i]) > 1e-3 * (1 + Math.abs(v)))).toBe(true);
  }
});

test('routed rows over a 4-bit base on WebGPU, DoRA stacked with LoRA ≈ the float64 routed rows', async () => {
  const gpu = await gpuBackend();
  const [k, n, m] = [64, 24, 7];
  const rand = prng(21);
  const w = randomTensor(rand, [n, k]);
  const bias = randomTensor(rand, [n]);
  const a = { name: 'a', a: randomTensor(rand, [k, 4]), b: randomTensor(rand, [4, n]), scale: 2 };
  const d = { name: 'd', a: randomTensor(rand, [k, 2]), b: randomTensor(rand, [2, n]), scale: 1, magnitude: randomTensor(rand, [n], 3) };
  const layers = [gpu, new JsBackend()].map((backend) => {
    const l = LoRALinear.fromBase(QuantizedLinear.fromLinear(new Linear(w, bias, { backend }), { bits: 4, groupSize: 32 }), a);
    l.addAdapter(d);
    return l;
  });
  const route = ['a', null, 'd', ['d', 'a'], ['a', 'd'], 'a', null];
  const x = randomTensor(rand, [m, k]);
  const got = (await layers[0].forward(x, { adapters: route }).read()) as Float32Array;
  const ref = layers[1].forward(x, { adapters: route }).data as Float32Array;
  ref.forEach((v, i) => expect(Math.abs(got[i] - v), `[${i}]`).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(v))));
});

test('16 rows routed to 16 adapters: 3 dispatches (base, sgmv shrink, sgmv expand), one submit; ≈ float64; null rows = the plain layer bit for bit', async () => {
  const gpu = await gpuBackend();
  const [k, n, m] = [32, 24, 16];
  const rand = prng(5);
  const w = randomTensor(rand, [n, k]);
  const bias = randomTensor(rand, [n]);
  const init = Array.from({ length: 16 }, (_, i) => ({
    name: `a${i}`,
    a: randomTensor(rand, [k, 2 + (i % 3)]),
    b: randomTensor(rand, [2 + (i % 3), n]),
    scale: 1 + i / 8,
    ...(i % 5 === 1 ? { bias: randomTensor(rand, [n]) } : {}),
  }));
  const [layer, ref] = [gpu, new JsBackend()].map((backend) => {
    const l = LoRALinear.fromBase(new Linear(w, bias, { backend }));
    for (const ad of init) l.addAdapter(ad);
    return l;
  });
  // Base rows, one adapter per row, and rows stacking two or three LoRA adapters (one pass each).
  const route = Array.from({ length: m }, (_, i) => (i % 4 === 3 ? null : i % 4 === 2 ? [`a${i}`, `a${(i + 5) % 16}`, 'a1'] : `a${i}`));
  const x = randomTensor(rand, [m, k]);
  (await layer.forward(x, { adapters: route }).read()); // first forward stacks the adapter banks (cached)
  const stats = (gpu as unknown as { stats: { kernels: Record<string, number>; submits: number; dispatches: number } }).stats;
  const before = { ...stats.kernels };
  const [submits, dispatches] = [stats.submits, stats.dispatches];
  const y = (await layer.forward(x, { adapters: route }).read()) as Float32Array;
  expect(stats.submits - submits, 'one command buffer for the routed forward and its read').toBe(1);
  const ran = Object.fromEntries(Object.entries(stats.kernels).map(([id, c]) => [id.split('[')[0], c - (before[id] ?? 0)] as const).filter(([, c]) => c > 0));
  expect(stats.dispatches - dispatches, JSON.stringify(ran)).toBe(3);
  expect(ran.sgmv_shrink).toBe(1);
  expect(ran.sgmv_expand).toBe(1);
  const want = ref.forward(x, { adapters: route }).data as Float32Array;
  want.forEach((v, i) => expect(Math.abs(y[i] - v), `[${i}]`).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(v))));
  const plain = (await new Linear(w, bias, { backend: gpu }).forward(x).read()) as Float32Array;
  route.forEach((a, i) => {
    if (a !== null) return;
    expect(new Uint32Array(y.buffer.slice(i * n * 4, (i + 1) * n * 4))).toEqual(new Uint32Array(plain.buffer.slice(i * n * 4, (i + 1) * n * 4)));
  });
  // Removing an adapter frees the banks that hold its factors (the pool's bytes drop); routes without it stay right.
  const pool = (gpu as unknown as { pool: { bytesInUse: number } }).pool;
  const held = pool.bytesInUse;
  layer.removeAdapter('a1');
  ref.removeAdapter('a1');
  expect(pool.bytesInUse).toBeLessThan(held);
  const route2 = route.map((a) => (Array.isArray(a) ? a.filter((q) => q !== 'a1') : a === 'a1' ? null : a));
  const y2 = (await layer.forward(x, { adapters: route2 }).read()) as Float32Array;
  const want2 = ref.forward(x, { adapters: route2 }).data as Float32Array;
  want2.forEach((v, i) => expect(Math.abs(y2[i] - v), `after remove [${i}]`).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(v))));
});
