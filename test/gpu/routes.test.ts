// Per-request adapters on WebGPU (per-group dispatch): every row of a mixed batch ≈ the js float64 backend's row
// (which equals the formula, test/lora/routes.test.ts), null rows ≈ the base; tolerance 1e-4·(1 + |y|). A DoRA
// stacked with other adapters on one row is refused with a typed error (not supported here yet).
import { expect, test } from 'vitest';
import { JsBackend } from '../../src/backends/js.js';
import { LoRALinear } from '../../src/lora/lora-linear.js';
import { Linear } from '../../src/nn/linear.js';
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
    const route = Array.from({ length: m }, (_, i) => [null, 'a', ['a', 'b'], 'd', 'b'][i % 5] as string | null | string[]);
    const x = randomTensor(rand, [m, k]);
    const got = (await layers[0].forward(x, { adapters: route }).read()) as Float32Array;
    const ref = layers[1].forward(x, { adapters: route }).data as Float32Array;
    ref.forEach((v, i) => expect(Math.abs(got[i] - v), `m=${m} [${i}]`).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(v))));
    expect(() => layers[0].forward(x, { adapters: Array(m).fill(['a', 'd']) })).toThrowError(expect.objectContaining({ code: 'dtype_unsupported' }));
  }
});
