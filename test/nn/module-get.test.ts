// Module.get with a class: typed (forward callable with no cast) and checked at run time.
import { expect, expectTypeOf, test } from 'vitest';
import { JsBackend } from '../../src/backends/js.js';
import { ApplyError } from '../../src/errors.js';
import { Embedding } from '../../src/nn/embedding.js';
import { LoRALinear } from '../../src/lora/lora-linear.js';
import { Linear } from '../../src/nn/linear.js';
import { Module } from '../../src/nn/module.js';
import { Tensor } from '../../src/tensor.js';

const backend = new JsBackend();

test('get(path, Linear) returns a typed Linear whose forward runs; get<T>(path) types without a check', () => {
  // W [n=2, k=3], bias [2]: y = x·Wᵀ + b worked by hand for x = [1, 2, 3].
  const lin = new Linear(Tensor.from(new Float32Array([1, 0, -1, 2, 1, 0]), [2, 3], 'f32'), Tensor.from(new Float32Array([0.5, -1]), [2], 'f32'), { backend });
  const root = new Module().set('model', new Module().set('proj', lin));
  const q = root.get('model.proj', Linear);
  expectTypeOf(q).toEqualTypeOf<Linear | undefined>();
  expect(Array.from(q!.forward(Tensor.from(new Float32Array([1, 2, 3]), [1, 3], 'f32')).toCpu().data)).toEqual([1 - 3 + 0.5, 2 + 2 - 1]);
  expectTypeOf(root.get<Linear>('model.proj')).toEqualTypeOf<Linear | undefined>();
  expectTypeOf(root.get('model.proj')).toEqualTypeOf<Module | undefined>();
  expect(root.get('', Module)).toBe(root);
  // A protected constructor (LoRALinear is built by fromBase) still names the class to check against.
  expectTypeOf(() => root.get('model.proj', LoRALinear)).returns.toEqualTypeOf<LoRALinear | undefined>();
  expect(() => root.get('model.proj', LoRALinear)).toThrow(ApplyError);
  expect(root.get('model.nope', Linear)).toBeUndefined();
});

test('get(path, Class) on a module of another class: ApplyError wrong_module_type naming both classes', () => {
  const root = new Module().set('proj', new Module());
  let err: unknown;
  try {
    root.get('proj', Embedding);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ApplyError);
  expect(err).toMatchObject({ code: 'wrong_module_type', module: 'proj', expected: 'Embedding', got: 'Module' });
});
