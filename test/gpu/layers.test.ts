// The golden cases through the layers (modelFromWeights → LoRAContainer → apply/toggle/fuse/unfuse/unload) on WebGPU,
// and a `weightDtype: 'bf16'` base there (WGSL has no bf16: W is widened on upload, exactly).
import { expect, test } from 'vitest';
import { LoRALinear } from '../../src/lora/lora-linear.js';
import { Linear } from '../../src/nn/linear.js';
import { Tensor } from '../../src/tensor.js';
import { goldenSuite } from '../lora/golden-suite.js';
import { gpuBackend } from './env.js';

goldenSuite([{ name: 'webgpu', make: () => gpuBackend() }]);

test('a bf16 base on WebGPU: W widened exactly from the bf16 rounding; LoRA on = float64 reference; off bit-identical', async () => {
  const be = await gpuBackend();
  const [m, k, n, r] = [2, 24, 10, 3];
  let seed = 9;
  const rnd = (len: number) => Array.from({ length: len }, () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1);
  const w = rnd(n * k);
  // bf16 of each f32 value, round to nearest even, as a value.
  const bf16 = (v: number) => {
    const u = new Uint32Array(new Float32Array([v]).buffer)[0];
    return new Float32Array(new Uint32Array([((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) << 16]).buffer)[0];
  };
  const base = new Linear(Tensor.f32(w, [n, k]), undefined, { backend: be, weightDtype: 'bf16' });
  expect(base.weight.dtype).toBe('f32');
  expect(Array.from(await base.weight.read())).toEqual(w.map(bf16));

  const a = rnd(k * r), b = rnd(r * n), x = rnd(m * k);
  const layer = LoRALinear.fromBase(base, { name: 'a', a: Tensor.f32(a, [k, r]), b: Tensor.f32(b, [r, n]), scale: 0.5 });
  const xt = Tensor.f32(x, [m, k]);
  const got = await layer.forward(xt).read();
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) {
        let d = 0;
        for (let q = 0; q < r; q++) d += a[p * r + q] * b[q * n + j];
        s += x[i * k + p] * (bf16(w[j * k + p]) + 0.5 * d);
      }
      expect(Math.abs(got[i * n + j] - s)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(s)));
    }
  layer.loraEnabled = false;
  const off = await layer.forward(xt).read();
  const plain = await base.forward(xt).read();
  expect(Buffer.from(off.buffer, off.byteOffset, off.byteLength).equals(Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength))).toBe(true);
});
