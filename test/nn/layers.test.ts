import { describe, expect, test } from 'vitest';
import { JsBackend } from '../../src/backends/js.js';
import { Conv1D } from '../../src/nn/conv1d.js';
import { Embedding } from '../../src/nn/embedding.js';
import { f16ToNumber, numberToBf16, numberToF16, bf16ToNumber, toF64 } from '../../src/nn/float.js';
import { Linear } from '../../src/nn/linear.js';
import { modelFromWeights, modelFromWeightsWithReport } from '../../src/nn/model-from-weights.js';
import { Module } from '../../src/nn/module.js';
import { QuantizedLinear } from '../../src/nn/quantized-linear.js';
import { Tensor } from '../../src/tensor.js';
import { expectClose, GOLDEN, prng, randomTensor, readSafetensors } from '../lora/helpers.js';

const backend = new JsBackend();
const rand = prng(3);

describe('Module', () => {
  test('get / replace / namedModules with HF paths', () => {
    const model = modelFromWeights(readSafetensors(`${GOLDEN}basic/base.safetensors`), { backend });
    expect([...model.namedModules()].filter(([, m]) => m instanceof Linear).map(([p]) => p)).toEqual([
      'model.layers.0.self_attn.q_proj',
      'model.layers.0.self_attn.v_proj',
      'model.layers.1.self_attn.q_proj',
      'model.layers.1.self_attn.v_proj',
    ]);
    const q = model.get('model.layers.0.self_attn.q_proj')!;
    const other = new Module();
    expect(model.replace('model.layers.0.self_attn.q_proj', other)).toBe(q);
    expect(model.get('model.layers.0.self_attn.q_proj')).toBe(other);
    expect(model.get('model.layers.9')).toBeUndefined();
    expect(() => model.replace('model.nope.x', other)).toThrow();
  });
});

describe('layers', () => {
  test('Conv1D equals Linear on the transposed weight, bit for bit', () => {
    const w = randomTensor(rand, [7, 5]); // [in, out]
    const wt = Tensor.zeros([5, 7], 'f32');
    for (let i = 0; i < 7; i++) for (let j = 0; j < 5; j++) wt.data[j * 7 + i] = w.data[i * 5 + j];
    const b = randomTensor(rand, [5]);
    const x = randomTensor(rand, [3, 7]);
    const conv = new Conv1D(w, b, { backend });
    expect(conv.weight).toBe(w);
    expect(conv.forward(x).data).toEqual(new Linear(wt, b, { backend }).forward(x).data);
    expect(String(conv)).toMatchInlineSnapshot(`"Conv1D(k=7, n=5, bias)"`);
  });

  test('Embedding gathers rows; withRows replaces some', () => {
    const e = new Embedding(randomTensor(rand, [6, 4]), { backend });
    const ids = Tensor.from(Int32Array.of(5, 0, 5), [3], 'i32');
    const y = e.forward(ids).data as Float32Array;
    expect(Array.from(y.slice(0, 4))).toEqual(Array.from((e.weight.data as Float32Array).slice(20, 24)));
    const e2 = e.withRows([0], Tensor.f32([1, 2, 3, 4], [1, 4]));
    expect(Array.from((e2.forward(ids).data as Float32Array).slice(4, 8))).toEqual([1, 2, 3, 4]);
    expect(String(e)).toMatchInlineSnapshot(`"Embedding(vocab=6, dim=4)"`);
  });

  test('QuantizedLinear dequantises the golden MLX weight exactly', () => {
    const base = readSafetensors(`${GOLDEN}qlora-affine/base.safetensors`);
    const io = readSafetensors(`${GOLDEN}qlora-affine/io.safetensors`);
    const model = modelFromWeights(base, { backend });
    const q = model.get('model.layers.0.mlp.up_proj') as QuantizedLinear;
    expect(q).toBeInstanceOf(QuantizedLinear);
    expect([q.bits, q.groupSize, q.k, q.n]).toEqual([4, 32, 64, 24]);
    expect(Array.from(q.denseF64())).toEqual(Array.from(toF64(io.get('model.layers.0.mlp.up_proj.dequantized.weight')!)));
    const x = io.get('model.layers.0.mlp.up_proj.x')!;
    expectClose(q.forward(x).data as Float32Array, toF64(io.get('model.layers.0.mlp.up_proj.y_off')!), [3, 24], 1e-4, 'y_off');
    expect(String(q)).toMatchInlineSnapshot(`"QuantizedLinear(k=64, n=24, bits=4, group=32)"`);
  });

  test.each([
    [4, 32],
    [4, 64],
    [8, 64],
    [8, 128],
  ] as const)('Linear.toQuantized ⇄ toLinear, bits %i group %i: within one step', (bits, groupSize) => {
    const lin = new Linear(randomTensor(rand, [5, 128]), randomTensor(rand, [5]), { backend });
    const q = lin.toQuantized({ bits, groupSize });
    const back = q.toLinear();
    const w = toF64(lin.weight);
    const w2 = toF64(back.weight);
    const scales = toF64(q.q.scales);
    for (let i = 0; i < w.length; i++) {
      const step = Math.abs(scales[Math.floor(i / 128) * (128 / groupSize) + Math.floor((i % 128) / groupSize)]);
      expect(Math.abs(w[i] - w2[i])).toBeLessThanOrEqual(step + 1e-7);
    }
    expect(back.bias).toBe(q.bias);
  });

  test('bad quantisation options list the valid values', () => {
    const lin = new Linear(randomTensor(rand, [2, 64]), undefined, { backend });
    expect(() => lin.toQuantized({ bits: 3 as 4 })).toThrowErrorMatchingInlineSnapshot(`[ApplyError: unsupported quantization bits: expected [4,8], got 3]`);
    expect(() => lin.toQuantized({ groupSize: 48 })).toThrowErrorMatchingInlineSnapshot(`[ApplyError: unsupported quantization group size: expected [32,64,128], got 48]`);
  });
});

describe('modelFromWeights', () => {
  test('embeddings by name, Conv1D by model type, bias pairing, unused tensors', () => {
    const w = {
      'transformer.wte.weight': randomTensor(rand, [10, 4]),
      'transformer.h.0.attn.c_attn.weight': randomTensor(rand, [4, 12]),
      'transformer.h.0.attn.c_attn.bias': randomTensor(rand, [12]),
      'transformer.h.0.ln_1.weight': randomTensor(rand, [4]),
      'lm_head.weight': randomTensor(rand, [10, 4]),
    };
    const { model, unused } = modelFromWeightsWithReport(w, { backend, modelType: 'gpt2' });
    expect(String(model.get('transformer.wte'))).toBe('Embedding(vocab=10, dim=4)');
    expect(String(model.get('transformer.h.0.attn.c_attn'))).toBe('Conv1D(k=4, n=12, bias)');
    expect(String(model.get('lm_head'))).toBe('Linear(k=4, n=10)');
    expect(unused).toEqual(['transformer.h.0.ln_1.weight']);
    expect(String(modelFromWeights(w, { backend, conv1d: ['c_attn'], embeddings: ['lm_head'] }).get('lm_head'))).toBe('Embedding(vocab=10, dim=4)');
  });
});

describe('float helpers', () => {
  test('f16 and bf16 round to nearest even', () => {
    // Half has 11 significant bits: relative error ≤ 2^-11, absolute ≤ 2^-25 in the subnormal range.
    for (const v of [0, 1, -2.5, 65504, 1e-7, 0.1, 3.14159, -1e-5]) expect(Math.abs(f16ToNumber(numberToF16(v)) - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -11 + 2 ** -25);
    expect(numberToF16(1 + 2 ** -11)).toBe(0x3c00); // tie → even
    expect(numberToF16(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(bf16ToNumber(numberToBf16(1 + 2 ** -8))).toBe(1); // tie → even
    expect(numberToF16(1e6)).toBe(0x7c00);
  });
});

describe('loadModel', () => {
  test('reads model.safetensors from a folder (here: an in-memory file set)', async () => {
    const { loadModel } = await import('../../src/models/load-model.js');
    const { readFileSync } = await import('node:fs');
    const { setDefaultBackend } = await import('../../src/backends/index.js');
    setDefaultBackend(backend);
    const model = await loadModel({ 'model.safetensors': new Uint8Array(readFileSync(`${GOLDEN}conv1d-fan-in-fan-out/base.safetensors`)) }, { modelType: 'gpt2' });
    expect(String(model.get('transformer.h.1.attn.c_proj'))).toBe('Conv1D(k=32, n=32, bias)');
  });
});
