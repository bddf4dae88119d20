import { describe, expect, test } from 'vitest';
import { JsBackend } from '../../src/backends/js.js';
import { ApplyError } from '../../src/errors.js';
import { LoRAContainer } from '../../src/adapter/container.js';
import { DoRALinear } from '../../src/lora/dora-linear.js';
import { isLoRALayer } from '../../src/lora/layer.js';
import { LoRAEmbedding } from '../../src/lora/lora-embedding.js';
import { LoRALinear } from '../../src/lora/lora-linear.js';
import { setLoRAEnabled } from '../../src/lora/set-enabled.js';
import { modelFromWeights } from '../../src/nn/model-from-weights.js';
import type { Module } from '../../src/nn/module.js';
import { Tensor } from '../../src/tensor.js';
import { expectSnapshotEqual, linearModule, prng, randomTensor, snapshot, specOf } from './helpers.js';

const backend = new JsBackend();
const rand = prng(7);

/** Two blocks of q_proj [8←6] / v_proj [4←6] and an embedding table [10,6]. */
function tinyModel(): Module {
  const w: Record<string, Tensor> = { 'model.embed_tokens.weight': randomTensor(rand, [10, 6]) };
  for (const i of [0, 1]) {
    w[`model.layers.${i}.self_attn.q_proj.weight`] = randomTensor(rand, [8, 6]);
    w[`model.layers.${i}.self_attn.q_proj.bias`] = randomTensor(rand, [8]);
    w[`model.layers.${i}.self_attn.v_proj.weight`] = randomTensor(rand, [4, 6]);
  }
  return modelFromWeights(w, { backend });
}

const good = (path: string, k: number, n: number, r = 2) => linearModule(path, randomTensor(rand, [k, r]), randomTensor(rand, [r, n]), 2);

function errorOf(f: () => unknown): ApplyError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ApplyError);
    return e as ApplyError;
  }
  throw new Error('expected an ApplyError');
}

describe('apply is atomic', () => {
  test('every bad tensor is reported at once, and the model is byte-identical afterwards', () => {
    const model = tinyModel();
    // A first adapter already stacked on q_proj of block 0, so stacking is part of the check.
    new LoRAContainer(specOf([good('model.layers.0.self_attn.q_proj', 6, 8)]), { name: 'first' }).apply(model);
    const before = snapshot(model);
    const bad = specOf([
      good('model.layers.0.self_attn.q_proj', 6, 8), // fine: stacks on the wrapped layer
      good('model.layers.0.self_attn.v_proj', 5, 4), // wrong in
      good('model.layers.1.self_attn.v_proj', 6, 5), // wrong out
      good('model.layers.7.self_attn.q_proj', 6, 8), // missing module
      linearModule('model.layers.1.self_attn.q_proj', randomTensor(rand, [6, 2]), randomTensor(rand, [3, 8]), 2), // rank
      { ...good('model.embed_tokens', 6, 8), kind: 'dora' }, // DoRA cannot wrap an embedding
    ]);
    const err = errorOf(() => new LoRAContainer(bad, { name: 'second' }).apply(model));
    expect(err.code).toBe('apply_failed');
    expect(err.issues.map((i) => i.code)).toEqual(['module_not_found', 'in_mismatch', 'out_mismatch', 'rank_mismatch', 'not_wrappable']);
    expect(err.message).toMatchInlineSnapshot(`
      "cannot apply adapter "second" (5 issues)
        ✖ adapter targets a module the model does not have → at model.layers.7.self_attn.q_proj
        ✖ adapter in features do not match the layer: expected 6, got 5 → at model.layers.0.self_attn.v_proj
        ✖ adapter out features do not match the layer: expected 4, got 5 → at model.layers.1.self_attn.v_proj
        ✖ lora_A and lora_B ranks differ: expected 2, got {"a":[6,2],"b":[3,8]} → at model.layers.1.self_attn.q_proj
        ✖ a dora adapter cannot wrap this module: expected Linear or QuantizedLinear, got Embedding → at model.embed_tokens"
    `);
    expectSnapshotEqual(before, snapshot(model));
  });

  test('the same adapter name twice on a layer is refused', () => {
    const model = tinyModel();
    const spec = specOf([good('model.layers.0.self_attn.q_proj', 6, 8)]);
    new LoRAContainer(spec).apply(model);
    const before = snapshot(model);
    const err = errorOf(() => new LoRAContainer(spec).apply(model));
    expect(err.message).toMatchInlineSnapshot(`
      "cannot apply adapter "default" (1 issue)
        ✖ an adapter with this name is already on the layer: got default → at model.layers.0.self_attn.q_proj"
    `);
    expectSnapshotEqual(before, snapshot(model));
  });

  test('replacement shape and kind errors', () => {
    const model = tinyModel();
    const before = snapshot(model);
    const spec = specOf([], {
      replacements: [
        { path: 'model.layers.0.self_attn.v_proj', kind: 'modules_to_save', tensors: { weight: randomTensor(rand, [4, 7]) }, dtype: 'F32' },
        { path: 'model.layers.0.self_attn.q_proj', kind: 'bias', tensors: { bias: randomTensor(rand, [9]) }, dtype: 'F32' },
        { path: 'model.layers.0.self_attn.q_proj', kind: 'trainable_tokens', tensors: {}, dtype: 'F32' },
        { path: 'model.embed_tokens', kind: 'trainable_tokens', tensors: { indices: Tensor.from(Int32Array.of(3, 10), [2], 'i32'), delta: randomTensor(rand, [2, 6]) }, dtype: 'F32' },
      ],
    });
    const err = errorOf(() => new LoRAContainer(spec).apply(model));
    expect(err.message).toMatchInlineSnapshot(`
      "cannot apply adapter "default" (4 issues)
        ✖ replacement weight does not match the layer: expected [4,6], got [4,7] (modules_to_save) → at model.layers.0.self_attn.v_proj
        ✖ replacement bias does not match the layer: expected [8], got [9] (bias) → at model.layers.0.self_attn.q_proj
        ✖ trainable tokens need an embedding: expected Embedding, got Linear → at model.layers.0.self_attn.q_proj
        ✖ trainable token index outside the vocabulary: expected 0 ≤ id < 10, got 10 → at model.embed_tokens"
    `);
    expectSnapshotEqual(before, snapshot(model));
  });
});

describe('lifecycle', () => {
  test('apply wraps, unload restores the very same objects', () => {
    const model = tinyModel();
    const before = snapshot(model);
    const c = new LoRAContainer(specOf([good('model.layers.0.self_attn.q_proj', 6, 8), good('model.layers.1.self_attn.v_proj', 6, 4)]));
    expect(c.backend).toBeUndefined(); // not applied yet: the report does not name one
    const applied = c.apply(model);
    expect(applied.map((a) => a.path)).toEqual(['model.layers.0.self_attn.q_proj', 'model.layers.1.self_attn.v_proj']);
    expect(model.get('model.layers.0.self_attn.q_proj')).toBeInstanceOf(LoRALinear);
    expect(String(model.get('model.layers.0.self_attn.q_proj'))).toMatchInlineSnapshot(`"LoRALinear(k=6, n=8, r=2, scale=2, on)"`);
    expect(String(c)).toMatchInlineSnapshot(`"LoRAContainer(default, peft, 2 modules, 2 applied, on)"`);
    expect(c.backend).toBe('js');
    expect(c.report.backend).toBe('js');
    expect(c.report.toString().split('\n')[0]).toMatch(/, running on js$/);
    c.unload();
    expectSnapshotEqual(before, snapshot(model));
  });

  test('fused without keepOriginal: toggling is a clear error; with keepOriginal off is the original', () => {
    const model = tinyModel();
    const path = 'model.layers.0.self_attn.q_proj';
    const base = model.get(path) as unknown as { forward(x: Tensor): Tensor };
    const x = randomTensor(rand, [3, 6]);
    const yBase = base.forward(x).data;
    const c = new LoRAContainer(specOf([good(path, 6, 8)]));
    c.apply(model);
    const layer = model.get(path) as LoRALinear;
    const yOn = Array.from(layer.forward(x).data);
    c.fuse();
    expect(errorOf(() => (c.enabled = false)).message).toMatchInlineSnapshot(`"cannot toggle or rescale a fused adapter: expected unfuse() first, or fuse({ keepOriginal: true }), got adapter "default" fused"`);
    expect(errorOf(() => setLoRAEnabled(model, false)).message).toMatchInlineSnapshot(`"cannot toggle or rescale a fused adapter: expected unfuse() first, or fuse({ keepOriginal: true }), got adapter "default" fused → at model.layers.0.self_attn.q_proj"`);
    expect(errorOf(() => (layer.loraEnabled = false)).message).toMatchInlineSnapshot(`"cannot toggle or rescale a fused adapter: expected unfuse() first, or fuse({ keepOriginal: true }), got adapter "default" fused → at model.layers.0.self_attn.q_proj"`);
    expect(errorOf(() => c.fuse()).code).toBe('fused');
    c.unfuse();
    expect(errorOf(() => c.unfuse()).message).toMatchInlineSnapshot(`"adapter is not fused: got default"`);
    c.fuse({ keepOriginal: true });
    Array.from(layer.forward(x).data).forEach((v, i) => expect(v).toBeCloseTo(yOn[i], 4));
    c.enabled = false;
    expect(layer.forward(x).data).toEqual(yBase);
    c.enabled = true;
    setLoRAEnabled(model, false);
    expect(layer.forward(x).data).toEqual(yBase);
    c.unload();
    expect(errorOf(() => c.unload()).message).toMatchInlineSnapshot(`"adapter is not applied to a model: expected apply(model) first, got default"`);
  });

  test('MLX relative keys resolve on the last num_layers blocks (num_layers -1 = all)', () => {
    for (const [numLayers, expected] of [
      [1, ['model.layers.1.self_attn.v_proj']],
      [-1, ['model.layers.0.self_attn.v_proj', 'model.layers.1.self_attn.v_proj']],
    ] as const) {
      const model = tinyModel();
      const c = new LoRAContainer(specOf([good('self_attn.v_proj', 6, 4)], { format: 'mlx', mlx: { numLayers } }));
      expect(c.apply(model).map((a) => a.path)).toEqual(expected);
      expect(isLoRALayer(model.get('model.layers.0.self_attn.v_proj'))).toBe(numLayers === -1);
    }
    const err = errorOf(() => new LoRAContainer(specOf([good('mlp.up_proj', 6, 4)], { format: 'mlx', mlx: { numLayers: 2 } })).apply(tinyModel()));
    expect(err.message).toMatchInlineSnapshot(`
      "cannot apply adapter "default" (1 issue)
        ✖ adapter targets a module the model does not have (MLX key, num_layers 2) → at mlp.up_proj"
    `);
  });

  test('embedding and DoRA adapters get their layer types', () => {
    const model = tinyModel();
    const emb = good('model.embed_tokens', 10, 6);
    const dora = { ...good('model.layers.0.self_attn.v_proj', 6, 4), kind: 'dora' as const, magnitude: randomTensor(rand, [4]) };
    new LoRAContainer(specOf([{ ...emb, kind: 'embedding' }, dora])).apply(model);
    expect(model.get('model.embed_tokens')).toBeInstanceOf(LoRAEmbedding);
    expect(model.get('model.layers.0.self_attn.v_proj')).toBeInstanceOf(DoRALinear);
    expect(String(model.get('model.embed_tokens'))).toMatchInlineSnapshot(`"LoRAEmbedding(vocab=10, dim=6, r=2, scale=2, on)"`);
  });
});
