import { describe, expect, test, vi } from 'vitest';
import type { Backend } from '../../src/backends/backend.js';
import { ApplyError } from '../../src/errors.js';
import type { RowAdapters } from '../../src/lora/layer.js';
import { LoRAEmbedding } from '../../src/lora/lora-embedding.js';
import { LoRALinear } from '../../src/lora/lora-linear.js';
import { withAdapters } from '../../src/lora/set-enabled.js';
import { Embedding } from '../../src/nn/embedding.js';
import { toF64 } from '../../src/nn/float.js';
import { Linear } from '../../src/nn/linear.js';
import { Module } from '../../src/nn/module.js';
import { QuantizedLinear } from '../../src/nn/quantized-linear.js';
import { Tensor } from '../../src/tensor.js';
import { backendCases } from './backends.js';
import { prng, randomTensor } from './helpers.js';

/**
 * Per-request adapters (routes): `forward(x, { adapters })`, `adapters[i]` for row i — a name, null (base) or a
 * list to stack. Checked against
 *   - the same row run alone with its adapters (bit for bit on wasm and js: batch invariance),
 *   - the base layer for null rows (bit for bit),
 *   - a float64 reference written here from the formula: y = x·Wᵀ; per adapter in order, LoRA y += s·(x·A·B + bias),
 *     DoRA y = g ⊙ (y + s·x·A·B), g = m / ‖W + s·(A·B)ᵀ‖_row; then + b. Tolerance: 1e-4·(1 + |y|) (f32 sums of ≤ 40
 *     products of values below 1 in magnitude).
 */

const [k, n] = [37, 45];

interface Adapter {
  a: Tensor<'f32'>;
  b: Tensor<'f32'>;
  scale: number;
  bias?: Tensor<'f32'>;
  magnitude?: Tensor<'f32'>;
}

function setup(backend: Backend, seed = 1) {
  const rand = prng(seed);
  const w = randomTensor(rand, [n, k]);
  const bias = randomTensor(rand, [n]);
  const base = new Linear(w, bias, { backend });
  const adapters: Record<string, Adapter> = {
    a: { a: randomTensor(rand, [k, 4]), b: randomTensor(rand, [4, n]), scale: 2, bias: randomTensor(rand, [n]) },
    b: { a: randomTensor(rand, [k, 8]), b: randomTensor(rand, [8, n]), scale: 0.5 },
    d: { a: randomTensor(rand, [k, 2]), b: randomTensor(rand, [2, n]), scale: 1.5, magnitude: randomTensor(rand, [n], 3) },
  };
  const layer = LoRALinear.fromBase(base);
  for (const [name, ad] of Object.entries(adapters)) layer.addAdapter({ name, ...ad });
  return { w, bias, base, layer, adapters };
}

/** One row of the float64 reference (see the file comment). */
function refRow(x: Float64Array, row: number, w: Float64Array, bias: Float64Array, ads: readonly Adapter[]): Float64Array {
  const y = new Float64Array(n);
  for (let j = 0; j < n; j++) for (let p = 0; p < k; p++) y[j] += x[row * k + p] * w[j * k + p];
  for (const ad of ads) {
    const [A, B, r] = [toF64(ad.a), toF64(ad.b), ad.a.shape[1]];
    const delta = new Float64Array(n);
    for (let j = 0; j < n; j++)
      for (let q = 0; q < r; q++) {
        let t = 0;
        for (let p = 0; p < k; p++) t += x[row * k + p] * A[p * r + q];
        delta[j] += ad.scale * t * B[q * n + j];
      }
    if (ad.bias) toF64(ad.bias).forEach((v, j) => (delta[j] += ad.scale * v));
    if (!ad.magnitude) {
      for (let j = 0; j < n; j++) y[j] += delta[j];
      continue;
    }
    const m = toF64(ad.magnitude);
    for (let j = 0; j < n; j++) {
      let ss = 0;
      for (let p = 0; p < k; p++) {
        let dw = 0;
        for (let q = 0; q < r; q++) dw += A[p * r + q] * B[q * n + j];
        ss += (w[j * k + p] + ad.scale * dw) ** 2;
      }
      y[j] = (m[j] / Math.sqrt(ss)) * (y[j] + delta[j]);
    }
  }
  for (let j = 0; j < n; j++) y[j] += bias[j];
  return y;
}

const names = (r: RowAdapters): string[] => (r === null ? [] : typeof r === 'string' ? [r] : [...r]);
const bitsOf = (t: Tensor) => new Uint32Array(Float32Array.from(t.data as Float32Array).buffer);
const row = (t: Tensor, i: number) => bitsOf(t).slice(i * n, (i + 1) * n);

const ROUTE: RowAdapters[] = [null, 'a', 'b', ['a', 'b'], 'd', ['d', 'a'], ['a', 'd'], null, 'a', ['b', 'a', 'd']];

describe.each(backendCases)('routes on $name', ({ make }) => {
  test('each row equals that row alone with its adapters (bit for bit), null rows equal the base, all ≈ float64', async () => {
    const backend = await make();
    const { w, bias, base, layer, adapters } = setup(backend);
    const m = ROUTE.length;
    const x = randomTensor(prng(9), [m, k]);
    const y = layer.forward(x, { adapters: ROUTE });
    expect(y.shape).toEqual([m, n]);
    const [x64, w64, b64] = [toF64(x), toF64(w), toF64(bias)];
    const got = Float32Array.from(y.data as Float32Array);
    ROUTE.forEach((r, i) => {
      const xi = Tensor.f32(Array.from(x.data as Float32Array).slice(i * k, (i + 1) * k), [1, k]);
      const alone = layer.forward(xi, { adapters: [r] });
      expect(row(y, i), `row ${i} (${JSON.stringify(r)}) alone`).toEqual(bitsOf(alone));
      if (r === null) expect(row(y, i), `row ${i} base`).toEqual(bitsOf(base.forward(xi)));
      const ref = refRow(x64, i, w64, b64, names(r).map((nm) => adapters[nm]));
      for (let j = 0; j < n; j++) expect(Math.abs(got[i * n + j] - ref[j]), `row ${i} col ${j}`).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(ref[j])));
    });
  });

  test("today's API is sugar over routes: one enabled adapter = the route naming it; DoRA and LoRA stack", async () => {
    const backend = await make();
    const { layer } = setup(backend, 2);
    const x = randomTensor(prng(3), [5, k]);
    layer.setAdapterEnabled('b', false);
    layer.setAdapterEnabled('d', false);
    expect(bitsOf(layer.forward(x))).toEqual(bitsOf(layer.forward(x, { adapters: Array(5).fill('a') })));
    // All three on: the bank order a, b, d (a DoRA after two LoRAs: two passes, through the routed op).
    layer.setAdapterEnabled('b', true);
    layer.setAdapterEnabled('d', true);
    expect(bitsOf(layer.forward(x))).toEqual(bitsOf(layer.forward(x, { adapters: Array(5).fill(['a', 'b', 'd']) })));
    // Fusing the stack gives the same function (float64 merge, rounded once).
    const fused = layer.fused() as Linear;
    const [yf, yu] = [fused.forward(x).data as Float32Array, layer.forward(x).data as Float32Array];
    yu.forEach((v, i) => expect(Math.abs(yf[i] - v)).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(v))));
    layer.loraEnabled = false;
    expect(bitsOf(layer.forward(x, { adapters: Array(5).fill(null) }))).toEqual(bitsOf(layer.forward(x)));
  });

  test('a route naming an unknown adapter, or of the wrong length, is a typed error before any work', async () => {
    const backend = await make();
    const { layer } = setup(backend, 4);
    const spies = [vi.spyOn(backend, 'linear'), vi.spyOn(backend, 'linearRouted' as never)];
    const x = randomTensor(prng(5), [3, k]);
    const err = (() => {
      try {
        layer.forward(x, { adapters: ['a', ['b', 'nope'], null] });
      } catch (e) {
        return e as ApplyError;
      }
      throw new Error('no error');
    })();
    expect(err).toBeInstanceOf(ApplyError);
    expect(err.code).toBe('not_applied');
    expect(err.message).toMatchInlineSnapshot(`"a route names an adapter this layer does not hold: expected ["a","b","d"], got nope → at LoRALinear › adapters[1]"`);
    expect(() => layer.forward(x, { adapters: ['a'] })).toThrowError(expect.objectContaining({ code: 'bad_option' }));
    for (const s of spies) expect(s).not.toHaveBeenCalled();
    spies.forEach((s) => s.mockRestore());
  });

  test('withAdapters routes a plain forward(x) through every LoRA layer of a model; unknown names throw first', async () => {
    const backend = await make();
    const rand = prng(6);
    const q = LoRALinear.fromBase(new Linear(randomTensor(rand, [n, k]), undefined, { backend }), { name: 'a', a: randomTensor(rand, [k, 2]), b: randomTensor(rand, [2, n]), scale: 1 });
    const v = LoRALinear.fromBase(new Linear(randomTensor(rand, [n, k]), undefined, { backend }), { name: 'b', a: randomTensor(rand, [k, 3]), b: randomTensor(rand, [3, n]), scale: 2 });
    const model = new Module().set('q', q).set('v', v);
    const x = randomTensor(rand, [3, k]);
    const route: RowAdapters[] = [null, 'a', ['a', 'b']];
    const [yq, yv] = withAdapters(model, route, () => [q.forward(x), v.forward(x)]);
    // q holds only "a", v only "b": a name a layer does not hold leaves those rows on its base (PEFT's targeting).
    expect(bitsOf(yq)).toEqual(bitsOf(q.forward(x, { adapters: [null, 'a', 'a'] })));
    expect(bitsOf(yv)).toEqual(bitsOf(v.forward(x, { adapters: [null, null, 'b'] })));
    expect(q.scopedAdapters).toBeUndefined();
    const fn = vi.fn();
    expect(() => withAdapters(model, ['zzz'], fn)).toThrowError(expect.objectContaining({ code: 'not_applied' }));
    expect(fn).not.toHaveBeenCalled();
  });

  test('embedding and quantised bases route per row too (bit for bit against each row alone)', async () => {
    const backend = await make();
    const rand = prng(8);
    const emb = LoRAEmbedding.fromBase(new Embedding(randomTensor(rand, [11, 6]), { backend }), { name: 'e', a: randomTensor(rand, [11, 3]), b: randomTensor(rand, [3, 6]), scale: 2 });
    const ids = Tensor.from(Int32Array.of(4, 4, 9, 0), [4], 'i32');
    const er: RowAdapters[] = ['e', null, 'e', null];
    const ye = emb.forward(ids, { adapters: er });
    er.forEach((r, i) => {
      const alone = emb.forward(Tensor.from(Int32Array.of((ids.data as Int32Array)[i]), [1], 'i32'), { adapters: [r] });
      expect(bitsOf(ye).slice(i * 6, i * 6 + 6)).toEqual(bitsOf(alone));
    });
    const qbase = QuantizedLinear.fromLinear(new Linear(randomTensor(rand, [n, 64]), randomTensor(rand, [n]), { backend }), { bits: 4, groupSize: 32 });
    const ql = LoRALinear.fromBase(qbase, { name: 'a', a: randomTensor(rand, [64, 4]), b: randomTensor(rand, [4, n]), scale: 2 });
    ql.addAdapter({ name: 'd', a: randomTensor(rand, [64, 2]), b: randomTensor(rand, [2, n]), scale: 1, magnitude: randomTensor(rand, [n], 3) });
    const x = randomTensor(rand, [6, 64]);
    const qr: RowAdapters[] = ['a', null, 'd', ['d', 'a'], 'a', null];
    const yq = ql.forward(x, { adapters: qr });
    qr.forEach((r, i) => {
      const xi = Tensor.f32(Array.from(x.data as Float32Array).slice(i * 64, (i + 1) * 64), [1, 64]);
      expect(row(yq, i), `row ${i}`).toEqual(bitsOf(ql.forward(xi, { adapters: [r] })));
      if (r === null) expect(row(yq, i)).toEqual(bitsOf(qbase.forward(xi)));
    });
  });
});
