// A hand-built adapter whose factors do not fit the layer is refused with a typed error, before anything changes.
import { describe, expect, test } from 'vitest';
import { JsBackend } from '../../src/backends/js.js';
import { ApplyError } from '../../src/errors.js';
import { LoRAEmbedding } from '../../src/lora/lora-embedding.js';
import { LoRALinear } from '../../src/lora/lora-linear.js';
import { Embedding } from '../../src/nn/embedding.js';
import { Linear } from '../../src/nn/linear.js';
import { Tensor } from '../../src/tensor.js';

const backend = new JsBackend();
const f32 = (...shape: number[]) => Tensor.zeros(shape, 'f32');
const layer = () => LoRALinear.fromBase(new Linear(f32(6, 4), undefined, { backend })); // k = 4, n = 6

function refusal(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ApplyError);
    return `${(e as ApplyError).code}: ${(e as ApplyError).message}`;
  }
  throw new Error('expected an ApplyError');
}

describe('addAdapter checks every factor against the layer', () => {
  test('A [k,r], B [r,n], bias [n], magnitude [n]; float dtypes; both factors or neither', () => {
    expect(refusal(() => layer().addAdapter({ name: 'x', a: f32(5, 2), b: f32(2, 6) }))).toMatchInlineSnapshot(`"in_mismatch: A does not fit the layer: expected [4, r], got [5, 2] → at LoRALinear › adapter x"`);
    expect(refusal(() => layer().addAdapter({ name: 'x', a: f32(4, 2), b: f32(2, 7) }))).toMatchInlineSnapshot(`"out_mismatch: B does not fit the layer: expected [r, 6], got [2, 7] → at LoRALinear › adapter x"`);
    expect(refusal(() => layer().addAdapter({ name: 'x', a: f32(4, 2), b: f32(3, 6) }))).toMatchInlineSnapshot(`"rank_mismatch: A and B disagree on the rank: expected B [2, 6], got [3, 6] → at LoRALinear › adapter x"`);
    expect(refusal(() => layer().addAdapter({ name: 'x', a: f32(4, 2) }))).toMatchInlineSnapshot(`"rank_mismatch: an adapter needs both factors or neither: expected A and B, got A only → at LoRALinear › adapter x"`);
    expect(refusal(() => layer().addAdapter({ name: 'x', a: f32(4, 2), b: f32(2, 6), bias: f32(5) }))).toMatchInlineSnapshot(`"out_mismatch: bias does not fit the layer: expected [6], got [5] → at LoRALinear › adapter x"`);
    expect(refusal(() => layer().addAdapter({ name: 'x', a: Tensor.zeros([4, 2], 'i32'), b: f32(2, 6) }))).toMatchInlineSnapshot(`"dtype_mismatch: A must be a float tensor: expected f32, f16, bf16 or f64, got i32 → at LoRALinear › adapter x"`);
    expect(refusal(() => layer().addAdapter({ name: 'x', a: f32(4, 2), b: f32(2, 6), magnitude: f32(4) }))).toMatchInlineSnapshot(`"out_mismatch: magnitude does not fit the layer: expected [6], got [4] → at LoRALinear › adapter x"`);
  });

  test('a refused adapter leaves the layer as it was; a fitting one is taken', () => {
    const l = layer();
    refusal(() => l.addAdapter({ name: 'bad', a: f32(5, 2), b: f32(2, 6) }));
    expect(l.adapter('bad')).toBeUndefined();
    expect(String(l)).toMatchInlineSnapshot(`"LoRALinear(k=4, n=6, adapters=[], on)"`);
    l.addAdapter({ name: 'good', a: f32(4, 2), b: f32(2, 6), scale: 2 });
    expect(l.adapter('good')?.rank).toBe(2);
  });

  test('embeddings: A [vocab,r], B [r,dim]', () => {
    const e = LoRAEmbedding.fromBase(new Embedding(f32(10, 3), { backend }));
    expect(refusal(() => e.addAdapter({ name: 'x', a: f32(9, 2), b: f32(2, 3) }))).toMatchInlineSnapshot(`"in_mismatch: A does not fit the layer: expected [10, r], got [9, 2] → at LoRAEmbedding › adapter x"`);
    e.addAdapter({ name: 'ok', a: f32(10, 2), b: f32(2, 3) });
  });
});
