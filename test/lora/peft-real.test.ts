import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { JsBackend } from '../../src/backends/js.js';
import { LoRAContainer } from '../../src/adapter/container.js';
import { isLoRALayer } from '../../src/lora/layer.js';
import { setLoRAEnabled } from '../../src/lora/set-enabled.js';
import { toF64 } from '../../src/nn/float.js';
import { modelFromWeights } from '../../src/nn/model-from-weights.js';
import type { Tensor } from '../../src/tensor.js';
import { expectClose, prng, randomTensor, readSafetensors, REAL } from './helpers.js';

/**
 * Real third-party adapters on synthetic bases built from the adapters' own shapes (seeded random weights).
 * Each module's output is compared with a float64 reference written here from the raw PEFT tensors:
 * y = x·Wᵀ + b + (α/r)·(x·Aᵀ)·Bᵀ  (GPT-2 Conv1D: x·W + b), lora_A [r,in], lora_B [out,r] as on disk.
 */
const cases = [
  { dir: 'smollm135m-qv', modelType: undefined },
  { dir: 'gpt2-tigrinya', modelType: 'gpt2' },
  { dir: 'opt125m-bf16', modelType: undefined },
  { dir: 'distilbert-imdb', modelType: undefined },
];

function ref(x: Float64Array, m: number, k: number, W: Float64Array, n: number, conv: boolean, b?: Float64Array, lora?: { A: Float64Array; B: Float64Array; r: number; s: number }): Float64Array {
  const y = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let o = 0; o < n; o++) {
      let acc = b ? b[o] : 0;
      for (let j = 0; j < k; j++) acc += x[i * k + j] * (conv ? W[j * n + o] : W[o * k + j]);
      if (lora) {
        let d = 0;
        for (let t = 0; t < lora.r; t++) {
          let xa = 0;
          for (let j = 0; j < k; j++) xa += x[i * k + j] * lora.A[t * k + j];
          d += xa * lora.B[o * lora.r + t];
        }
        acc += lora.s * d;
      }
      y[i * n + o] = acc;
    }
  return y;
}

describe.each(cases)('peft-real $dir', ({ dir, modelType }) => {
  test('every module matches the float64 reference; off is the base', async () => {
    const backend = new JsBackend();
    const rand = prng(1234);
    const config = JSON.parse(readFileSync(`${REAL}${dir}/adapter_config.json`, 'utf8')) as { r: number; lora_alpha: number };
    const raw = readSafetensors(`${REAL}${dir}/adapter_model.safetensors`);
    const adapter = await LoRAContainer.fromPEFT(`${REAL}${dir}`);
    const conv = modelType === 'gpt2';
    // The synthetic base: one layer per adapted module, shaped from the adapter; replaced modules by their saved weight.
    const weights: Record<string, Tensor> = {};
    for (const m of adapter.spec.modules) {
      weights[`${m.path}.weight`] = randomTensor(rand, conv ? [m.in, m.out] : [m.out, m.in], 0.05);
      weights[`${m.path}.bias`] = randomTensor(rand, [m.out], 0.05);
    }
    for (const r of adapter.spec.replacements) {
      if (r.tensors.weight) weights[`${r.path}.weight`] = randomTensor(rand, [...r.tensors.weight.shape], 0.05);
      if (r.tensors.bias) weights[`${r.path}.bias`] = randomTensor(rand, [...r.tensors.bias.shape], 0.05);
    }
    const model = modelFromWeights(weights, { backend, modelType });
    adapter.apply(model);
    expect(adapter.applied.length).toBe(new Set([...adapter.spec.modules, ...adapter.spec.replacements].map((m) => m.path)).size);

    const m = 2;
    const key = (path: string, k: string) => [...raw.keys()].find((n) => n === `base_model.model.${path}.${k}` || n === `base_model.model.${path}.${k.replace('.weight', '.default.weight')}`);
    for (const mod of adapter.spec.modules) {
      const layer = model.get(mod.path)!;
      expect(isLoRALayer(layer)).toBe(true);
      const x = randomTensor(rand, [m, mod.in]);
      const A = toF64(raw.get(key(mod.path, 'lora_A.weight')!)!);
      const B = toF64(raw.get(key(mod.path, 'lora_B.weight')!)!);
      const W = toF64(weights[`${mod.path}.weight`]);
      const b = toF64(weights[`${mod.path}.bias`]);
      const exp = ref(toF64(x), m, mod.in, W, mod.out, conv, b, { A, B, r: config.r, s: config.lora_alpha / config.r });
      const y = (layer as unknown as { forward(t: Tensor): Tensor }).forward(x);
      expectClose(y.data as Float32Array, exp, [m, mod.out], 1e-4, `${dir} ${mod.path}`);
    }
    for (const rep of adapter.spec.replacements) {
      const layer = model.get(rep.path) as unknown as { forward(t: Tensor): Tensor };
      const w = raw.get(`base_model.model.${rep.path}.weight`) ?? raw.get(`base_model.model.${rep.path}.modules_to_save.default.weight`);
      if (!w) continue;
      const [n, k] = w.shape;
      const bias = raw.get(`base_model.model.${rep.path}.bias`) ?? raw.get(`base_model.model.${rep.path}.modules_to_save.default.bias`);
      const x = randomTensor(rand, [m, k]);
      expectClose(layer.forward(x).data as Float32Array, ref(toF64(x), m, k, toF64(w), n, false, bias && toF64(bias)), [m, n], 1e-4, `${dir} ${rep.path} (replacement)`);
      setLoRAEnabled(model, false);
      const own = toF64(weights[`${rep.path}.weight`]);
      const ownB = weights[`${rep.path}.bias`];
      expectClose(layer.forward(x).data as Float32Array, ref(toF64(x), m, k, own, n, false, ownB && toF64(ownB)), [m, n], 1e-4, `${dir} ${rep.path} off`);
      setLoRAEnabled(model, true);
    }
    adapter.unload();
  }, 120_000);
});

test('peft-real t5-small-peft02-bin (adapter_model.bin): every module matches x·Wᵀ + (α/r)·(x·A)·B', async () => {
  const backend = new JsBackend();
  const rand = prng(99);
  const adapter = await LoRAContainer.fromPEFT(`${REAL}t5-small-peft02-bin`);
  const weights: Record<string, Tensor> = {};
  for (const m of adapter.spec.modules) weights[`${m.path}.weight`] = randomTensor(rand, [m.out, m.in], 0.05);
  const model = modelFromWeights(weights, { backend });
  adapter.apply(model);
  expect(adapter.spec.modules.length).toBeGreaterThan(0);
  for (const mod of adapter.spec.modules) {
    // From the loaded factors (internal layout a [in,r], b [r,out]); the .bin parser has its own tests.
    const x = randomTensor(rand, [2, mod.in]);
    const a = toF64(mod.a);
    const b = toF64(mod.b);
    const A = new Float64Array(mod.rank * mod.in);
    const B = new Float64Array(mod.out * mod.rank);
    for (let j = 0; j < mod.in; j++) for (let t = 0; t < mod.rank; t++) A[t * mod.in + j] = a[j * mod.rank + t];
    for (let t = 0; t < mod.rank; t++) for (let o = 0; o < mod.out; o++) B[o * mod.rank + t] = b[t * mod.out + o];
    const exp = ref(toF64(x), 2, mod.in, toF64(weights[`${mod.path}.weight`]), mod.out, false, undefined, { A, B, r: mod.rank, s: 32 / 16 });
    const y = (model.get(mod.path) as unknown as { forward(t: Tensor): Tensor }).forward(x);
    expectClose(y.data as Float32Array, exp, [2, mod.out], 1e-4, `t5 ${mod.path}`);
  }
});
