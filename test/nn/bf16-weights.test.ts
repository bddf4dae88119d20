// Base weights kept as bf16 (`weightDtype: 'bf16'`): storage, rounding, loading, and LoRA / DoRA / fuse on top,
// on the float64 js backend and on wasm. References are float64 on the bf16-decoded W, written here.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { JsBackend } from '../../src/backends/js.js';
import { writeSafetensors } from '../../src/formats/safetensors.js';
import { DoRALinear } from '../../src/lora/dora-linear.js';
import { LoRAEmbedding } from '../../src/lora/lora-embedding.js';
import { LoRALinear } from '../../src/lora/lora-linear.js';
import { Conv1D } from '../../src/nn/conv1d.js';
import { Embedding } from '../../src/nn/embedding.js';
import { Linear } from '../../src/nn/linear.js';
import { loadModel } from '../../src/models/load-model.js';
import { Tensor } from '../../src/tensor.js';
import { backendCases } from '../lora/backends.js';
import { prng, randomTensor } from '../lora/helpers.js';

/** bf16 bits → value: the upper half of an f32. */
const bf16Value = (h: number) => new Float32Array(new Uint32Array([h << 16]).buffer)[0];
/** f32 value → bf16 bits, round to nearest, ties to even (non-NaN). */
function rneBf16(v: number): number {
  const u = new Uint32Array(new Float32Array([v]).buffer)[0];
  const lower = u & 0xffff;
  let upper = u >>> 16;
  if (lower > 0x8000 || (lower === 0x8000 && (upper & 1) === 1)) upper++;
  return upper & 0xffff;
}
const bitsOf = (t: Tensor) => Buffer.from(t.storage.bytes().slice());

/** y [m,n] = x·Wᵀ + b in float64; W [n,k]. */
function refLinear(x: ArrayLike<number>, w: ArrayLike<number>, m: number, k: number, n: number, b?: ArrayLike<number>): Float64Array {
  const y = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += x[i * k + p] * w[j * k + p];
      y[i * n + j] = s + (b ? b[j] : 0);
    }
  return y;
}
function expectNear(got: ArrayLike<number>, want: Float64Array, k: number, what: string): void {
  const scale = Math.max(1, ...Array.from(want, Math.abs));
  const tol = (k + 8) * 2 ** -23 * scale * 4; // f32 accumulation over k terms of |x|,|W| ≤ 1-ish
  for (let i = 0; i < want.length; i++) expect(Math.abs(got[i] - want[i]), `${what} [${i}]`).toBeLessThanOrEqual(tol);
}

test('rounding an f32 W to bf16 is round-to-nearest-even, ties included', () => {
  const values = [1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8), 1 + 2 ** -8 + 2 ** -20, 0, -0, 3.140625, 65504, 1e-40];
  const expected = [0x3f80, 0x3f82, 0xbf80, 0x3f81]; // worked by hand: ties go to the even mantissa
  const lin = new Linear(Tensor.f32(values, [values.length, 1]), undefined, { backend: new JsBackend(), weightDtype: 'bf16' });
  const got = Array.from(lin.weight.data as Uint16Array);
  expect(got.slice(0, 4)).toEqual(expected);
  expect(got).toEqual(values.map(rneBf16));
  expect(lin.weight.dtype).toBe('bf16');
});

test('a weightDtype other than f32 / bf16, or bf16 for an integer weight, is a typed error', () => {
  const backend = new JsBackend();
  const w = Tensor.f32([1, 2, 3, 4], [2, 2]);
  expect(() => new Linear(w, undefined, { backend, weightDtype: 'f16' as never })).toThrowError(/unsupported weightDtype: expected 'f32' or 'bf16', got f16/);
  expect(() => new Linear(Tensor.from(new Int32Array(4), [2, 2], 'i32'), undefined, { backend, weightDtype: 'bf16' })).toThrowError(/only a float weight can be stored as bf16/);
});

describe.each(backendCases)('bf16 base weights on $name', ({ name, make }) => {
  const rand = prng(77);

  test('Linear keeps 2 bytes per weight and computes on them', async () => {
    const backend = await make();
    const [m, k, n] = [3, 37, 21];
    const w32 = randomTensor(rand, [n, k]);
    const b = randomTensor(rand, [n]);
    const lin = new Linear(w32, b, { backend, weightDtype: 'bf16' });
    expect(lin.weight.dtype).toBe('bf16');
    expect(lin.weight.storage.byteLength).toBe(n * k * 2);
    if (name === 'wasm') expect(lin.weight.device).toBe('wasm');
    expect(String(lin)).toContain('bf16');
    const wq = Array.from(w32.data as Float32Array, (v) => bf16Value(rneBf16(v)));
    const x = randomTensor(rand, [m, k]);
    expectNear(lin.forward(x).toCpu().data as Float32Array, refLinear(x.data, wq, m, k, n, b.data), k, 'Linear bf16');
    // The default still widens to f32.
    expect(new Linear(w32, b, { backend }).weight.dtype).toBe('f32');
  });

  test('LoRA on a bf16 base: on = float64 reference, off bit-identical to the base, fuse rounds to bf16, unfuse restores the bytes', async () => {
    const backend = await make();
    const [m, k, n, r, s] = [2, 40, 24, 4, 0.75];
    const base = new Linear(randomTensor(rand, [n, k]), randomTensor(rand, [n]), { backend, weightDtype: 'bf16' });
    const A = randomTensor(rand, [k, r]);
    const B = randomTensor(rand, [r, n]);
    const layer = LoRALinear.fromBase(base, { name: 'a', a: A, b: B, scale: s });
    const W = Array.from(base.weight.toCpu().data as Uint16Array, bf16Value);
    const Weff = W.map((v, idx) => {
      const [j, p] = [Math.floor(idx / k), idx % k];
      let d = 0;
      for (let q = 0; q < r; q++) d += (A.data as Float32Array)[p * r + q] * (B.data as Float32Array)[q * n + j];
      return v + s * d;
    });
    const x = randomTensor(rand, [m, k]);
    expectNear(layer.forward(x).toCpu().data as Float32Array, refLinear(x.data, Weff, m, k, n, base.bias!.toCpu().data as Float32Array), k + r, 'LoRA on');

    layer.loraEnabled = false;
    expect(bitsOf(layer.forward(x).toCpu()).equals(bitsOf(base.forward(x).toCpu()))).toBe(true);
    layer.loraEnabled = true;

    const original = bitsOf(base.weight.toCpu());
    layer.fuseAdapter('a');
    const fused = layer.base as Linear;
    expect(fused).not.toBe(base);
    expect(fused.weight.dtype).toBe('bf16');
    const fw = Array.from(fused.weight.toCpu().data as Uint16Array, bf16Value);
    fw.forEach((v, i) => expect(Math.abs(v - Weff[i])).toBeLessThanOrEqual(2 ** -8 * Math.abs(Weff[i]) + 1e-30)); // half a bf16 ulp
    layer.unfuseAdapter('a');
    expect(layer.base).toBe(base);
    expect(bitsOf(base.weight.toCpu()).equals(original)).toBe(true);
  });

  test('DoRA on a bf16 base matches m/‖W′‖ ⊙ x·W′ᵀ + b in float64', async () => {
    const backend = await make();
    const [m, k, n, r, s] = [3, 16, 10, 2, 1.5];
    const base = new Linear(randomTensor(rand, [n, k]), randomTensor(rand, [n]), { backend, weightDtype: 'bf16' });
    const A = randomTensor(rand, [k, r]);
    const B = randomTensor(rand, [r, n]);
    const mag = Tensor.f32(Array.from({ length: n }, () => 0.5 + rand()), [n]);
    const layer = DoRALinear.fromBase(base, { name: 'd', a: A, b: B, scale: s, magnitude: mag });
    const W = Array.from(base.weight.toCpu().data as Uint16Array, bf16Value);
    const Wp = W.map((v, idx) => {
      const [j, p] = [Math.floor(idx / k), idx % k];
      let d = 0;
      for (let q = 0; q < r; q++) d += (A.data as Float32Array)[p * r + q] * (B.data as Float32Array)[q * n + j];
      return v + s * d;
    });
    const x = randomTensor(rand, [m, k]);
    const plain = refLinear(x.data, Wp, m, k, n);
    const bias = base.bias!.toCpu().data as Float32Array;
    const want = plain.map((v, idx) => {
      const j = idx % n;
      let norm = 0;
      for (let p = 0; p < k; p++) norm += Wp[j * k + p] ** 2;
      return ((mag.data as Float32Array)[j] / Math.sqrt(norm)) * v + bias[j];
    });
    expectNear(layer.forward(x).toCpu().data as Float32Array, want, k + r, 'DoRA on bf16');
  });

  test('Conv1D keeps its [k,n] weight and the [n,k] copy as bf16', async () => {
    const backend = await make();
    const [m, k, n] = [2, 9, 5];
    const w = randomTensor(rand, [k, n]);
    const conv = new Conv1D(w, undefined, { backend, weightDtype: 'bf16' });
    expect(conv.weight.dtype).toBe('bf16');
    expect(conv.weightT.dtype).toBe('bf16');
    const wq = new Float64Array(n * k);
    for (let p = 0; p < k; p++) for (let j = 0; j < n; j++) wq[j * k + p] = bf16Value(rneBf16((w.data as Float32Array)[p * n + j]));
    const x = randomTensor(rand, [m, k]);
    expectNear(conv.forward(x).toCpu().data as Float32Array, refLinear(x.data, wq, m, k, n), k, 'Conv1D bf16');
  });

  test('Embedding keeps a bf16 table: gathered rows widen exactly; LoRAEmbedding adds s·A[ids]·B; off is bit-identical', async () => {
    const backend = await make();
    const [vocab, dim, r, s] = [50, 24, 3, 2];
    const eBits = Uint16Array.from({ length: vocab * dim }, () => rneBf16(rand() * 2 - 1));
    const emb = new Embedding(Tensor.from(eBits, [vocab, dim], 'bf16'), { backend, weightDtype: 'bf16' });
    expect(emb.weight.dtype).toBe('bf16');
    expect(emb.weight.storage.byteLength).toBe(vocab * dim * 2);
    const ids = Tensor.from(Int32Array.from([0, 49, 7, 7, 13]), [5], 'i32');
    const rows = Array.from(ids.data as Int32Array);
    const want = rows.flatMap((id) => Array.from(eBits.subarray(id * dim, (id + 1) * dim), bf16Value));
    expect(Array.from(emb.forward(ids).toCpu().data as Float32Array)).toEqual(want); // widening is exact

    const A = randomTensor(rand, [vocab, r]);
    const B = randomTensor(rand, [r, dim]);
    const layer = LoRAEmbedding.fromBase(emb, { name: 'e', a: A, b: B, scale: s });
    const on = layer.forward(ids).toCpu().data as Float32Array;
    rows.forEach((id, i) => {
      for (let c = 0; c < dim; c++) {
        let d = 0;
        for (let q = 0; q < r; q++) d += (A.data as Float32Array)[id * r + q] * (B.data as Float32Array)[q * dim + c];
        expect(Math.abs(on[i * dim + c] - (want[i * dim + c] + s * d))).toBeLessThanOrEqual(1e-5);
      }
    });
    layer.loraEnabled = false;
    expect(bitsOf(layer.forward(ids).toCpu()).equals(bitsOf(emb.forward(ids).toCpu()))).toBe(true);
  });

  test('loadModel({ weightDtype: "bf16" }) keeps a bf16 checkpoint byte for byte; the default widens it', async () => {
    const backend = await make();
    const [k, n] = [24, 12];
    const wBits = Uint16Array.from({ length: n * k }, () => rneBf16(rand() * 2 - 1));
    const bias = Float32Array.from({ length: n }, () => rand());
    const dir = mkdtempSync(join(tmpdir(), 'peftjs-bf16-'));
    writeFileSync(
      join(dir, 'model.safetensors'),
      writeSafetensors({
        'model.layers.0.mlp.up_proj.weight': { dtype: 'BF16', shape: [n, k], data: wBits },
        'model.layers.0.mlp.up_proj.bias': { dtype: 'F32', shape: [n], data: bias },
        'model.embed_tokens.weight': { dtype: 'BF16', shape: [7, k], data: wBits.subarray(0, 7 * k) },
      }),
    );
    const model = await loadModel(dir, { backend, weightDtype: 'bf16' });
    const kept = model.get('model.layers.0.mlp.up_proj') as Linear;
    const embed = model.get('model.embed_tokens') as Embedding;
    expect(embed).toBeInstanceOf(Embedding);
    expect(Array.from(embed.weight.toCpu().data as Uint16Array)).toEqual(Array.from(wBits.subarray(0, 7 * k)));
    expect(kept.weight.dtype).toBe('bf16');
    expect(Array.from(kept.weight.toCpu().data as Uint16Array)).toEqual(Array.from(wBits));
    const x = randomTensor(rand, [1, k]);
    expectNear(kept.forward(x).toCpu().data as Float32Array, refLinear(x.data, Array.from(wBits, bf16Value), 1, k, n, bias), k, 'loaded bf16');
    const widened = (await loadModel(dir, { backend })).get('model.layers.0.mlp.up_proj') as Linear;
    if (name === 'wasm') expect(widened.weight.dtype).toBe('f32');
    expect(bitsOf(widened.forward(x).toCpu()).length).toBe(n * 4);
  });
});
