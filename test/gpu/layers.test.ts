// The golden cases through the layers (modelFromWeights → LoRAContainer → apply/toggle/fuse/unfuse/unload) on WebGPU,
// and `weightDtype: 'bf16'` there: W and embedding tables stay bf16 on the GPU (two per u32, unpacked in the shader).
import { expect, test } from 'vitest';
import { LoRAEmbedding } from '../../src/lora/lora-embedding.js';
import { LoRALinear } from '../../src/lora/lora-linear.js';
import { Embedding } from '../../src/nn/embedding.js';
import { Linear } from '../../src/nn/linear.js';
import { Tensor } from '../../src/tensor.js';
import { goldenSuite } from '../lora/golden-suite.js';
import { gpuBackend } from './env.js';

goldenSuite([{ name: 'webgpu', make: () => gpuBackend() }]);

let seed = 9;
const rnd = (len: number) => Array.from({ length: len }, () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1);
/** f32 value → bf16 bits, round to nearest even; and bits → value. */
const toBits = (v: number) => {
  const u = new Uint32Array(new Float32Array([v]).buffer)[0];
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
};
const fromBits = (h: number) => new Float32Array(new Uint32Array([h << 16]).buffer)[0];
const same = (a: ArrayBufferView, b: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

// m = 1, 3: the cooperative GEMV (fused LoRA); m = 17: the tiled GEMM. n·k odd: the last u32 holds one bf16.
test.each([1, 3, 17])('bf16 W kept on WebGPU, m=%i: half the bytes, LoRA on = float64 reference, off bit-identical', async (m) => {
  const be = await gpuBackend();
  const [k, n, r] = [37, 29, 3];
  const w = rnd(n * k);
  const base = new Linear(Tensor.f32(w, [n, k]), Tensor.f32(rnd(n), [n]), { backend: be, weightDtype: 'bf16' });
  expect(base.weight.dtype).toBe('bf16');
  expect(base.weight.device).toBe('gpu');
  expect(base.weight.storage.byteLength).toBe(n * k * 2);
  const bits = Array.from(await base.weight.read());
  expect(bits).toEqual(w.map(toBits));
  const wq = bits.map(fromBits);
  const bias = Array.from(await base.bias!.read());

  const a = rnd(k * r), b = rnd(r * n), x = rnd(m * k);
  const layer = LoRALinear.fromBase(base, { name: 'a', a: Tensor.f32(a, [k, r]), b: Tensor.f32(b, [r, n]), scale: 0.5 });
  const xt = Tensor.f32(x, [m, k]);
  const got = await layer.forward(xt).read();
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = bias[j];
      for (let p = 0; p < k; p++) {
        let d = 0;
        for (let q = 0; q < r; q++) d += a[p * r + q] * b[q * n + j];
        s += x[i * k + p] * (wq[j * k + p] + 0.5 * d);
      }
      expect(Math.abs(got[i * n + j] - s), `y[${i},${j}]`).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(s)));
    }
  layer.loraEnabled = false;
  expect(same(await layer.forward(xt).read(), await base.forward(xt).read())).toBe(true);
});

test('bf16 embedding table kept on WebGPU: rows widen exactly; LoRAEmbedding adds s·A[ids]·B', async () => {
  const be = await gpuBackend();
  const [vocab, dim, r] = [19, 13, 2];
  const e = rnd(vocab * dim);
  const emb = new Embedding(Tensor.f32(e, [vocab, dim]), { backend: be, weightDtype: 'bf16' });
  expect(emb.weight.dtype).toBe('bf16');
  const ids = Tensor.from(Int32Array.from([0, 18, 5, 5]), [4], 'i32');
  const want = [0, 18, 5, 5].flatMap((id) => e.slice(id * dim, (id + 1) * dim).map((v) => fromBits(toBits(v))));
  expect(Array.from(await emb.forward(ids).read())).toEqual(want);
  const a = rnd(vocab * r), b = rnd(r * dim);
  const layer = LoRAEmbedding.fromBase(emb, { name: 'e', a: Tensor.f32(a, [vocab, r]), b: Tensor.f32(b, [r, dim]), scale: 2 });
  const got = await layer.forward(ids).read();
  [0, 18, 5, 5].forEach((id, i) => {
    for (let c = 0; c < dim; c++) {
      let d = 0;
      for (let q = 0; q < r; q++) d += a[id * r + q] * b[q * dim + c];
      expect(Math.abs(got[i * dim + c] - (want[i * dim + c] + 2 * d))).toBeLessThanOrEqual(1e-5);
    }
  });
});

test('DoRA on a bf16 W kept on WebGPU: m/‖W′‖ from the host bf16 bytes, = float64 reference', async () => {
  const { DoRALinear } = await import('../../src/lora/dora-linear.js');
  const be = await gpuBackend();
  const [m, k, n, r, s] = [2, 21, 11, 2, 1.5];
  const w = rnd(n * k);
  const base = new Linear(Tensor.f32(w, [n, k]), undefined, { backend: be, weightDtype: 'bf16' });
  const a = rnd(k * r), b = rnd(r * n), mag = rnd(n).map((v) => 1 + Math.abs(v)), x = rnd(m * k);
  const layer = DoRALinear.fromBase(base, { name: 'd', a: Tensor.f32(a, [k, r]), b: Tensor.f32(b, [r, n]), scale: s, magnitude: Tensor.f32(mag, [n]) });
  const Wp = w.map((v, idx) => {
    const [j, p] = [Math.floor(idx / k), idx % k];
    let d = 0;
    for (let q = 0; q < r; q++) d += a[p * r + q] * b[q * n + j];
    return fromBits(toBits(v)) + s * d;
  });
  const got = await layer.forward(Tensor.f32(x, [m, k])).read();
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let dot = 0, norm = 0;
      for (let p = 0; p < k; p++) {
        dot += x[i * k + p] * Wp[j * k + p];
        norm += Wp[j * k + p] ** 2;
      }
      const want = (mag[j] / Math.sqrt(norm)) * dot;
      expect(Math.abs(got[i * n + j] - want)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(want)));
    }
});
