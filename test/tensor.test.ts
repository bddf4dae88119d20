import v8 from 'node:v8';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import { init } from '../src/backends/index.js';
import { BackendError, WasmRuntimeError } from '../src/errors.js';
import { allocWasmTensor } from '../src/runtime/storage.js';
import { wasmRuntime } from '../src/runtime/wasm.js';
import { Tensor, deferFinalization } from '../src/tensor.js';

describe('Tensor', () => {
  it('from/zeros/f32: shape, dtype, size and byteLength agree', () => {
    const t = Tensor.f32([1, 2, 3, 4, 5, 6], [2, 3]);
    expect([t.shape, t.dtype, t.size, t.byteLength, t.ndim]).toEqual([[2, 3], 'f32', 6, 24, 2]);
    expect(Tensor.zeros([3, 5], 'bf16').byteLength).toBe(30);
  });

  it('a storage whose size does not match the shape is a typed error', () => {
    expect(() => Tensor.from(new Float32Array(5), [2, 3], 'f32')).toThrow(BackendError);
  });

  it('reshape is a view on the same bytes; toCpu is a copy', () => {
    const t = Tensor.f32([1, 2, 3, 4, 5, 6], [2, 3]);
    const v = t.reshape([3, 2]);
    v.data[0] = 42;
    expect(t.data[0]).toBe(42);
    const c = t.toCpu();
    c.data[1] = -1;
    expect(t.data[1]).toBe(2);
  });

  it('wasm tensors: views survive memory growth; dispose frees; use after dispose is a typed error', async () => {
    await init();
    const rt = wasmRuntime();
    const t = allocWasmTensor(rt, [4], 'f32');
    t.data.set([1, 2, 3, 4]);
    const before = rt.memory.buffer.byteLength;
    const big = rt.malloc(before); // forces memory.grow
    expect(rt.memory.buffer.byteLength).toBeGreaterThan(before);
    expect(Array.from(t.data)).toEqual([1, 2, 3, 4]);
    rt.free(big);
    t.dispose();
    expect(() => t.data).toThrow(WasmRuntimeError);
  });

  it('deferFinalization: a tensor dropped undisposed inside the scope is still freed by the finalizer after it', async () => {
    await init();
    const rt = wasmRuntime();
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    // The scope returns fn's value and passes its exception through; it nests.
    expect(deferFinalization(() => deferFinalization(() => 7))).toBe(7);
    expect(() => deferFinalization(() => { throw new RangeError('x'); })).toThrow(RangeError);
    // Storages of tensors made in the scope: one disposed inside, one returned, one dropped without dispose.
    const storages: { disposed: boolean }[] = [];
    const kept = deferFinalization(() => {
      const a = allocWasmTensor(rt, [8], 'f32');
      a.dispose();
      const dropped = allocWasmTensor(rt, [8], 'f32');
      storages.push(dropped.storage);
      const ret = allocWasmTensor(rt, [8], 'f32');
      ret.reshape([2, 4]); // a view registers nothing, inside the scope or out
      return ret;
    });
    kept.data.set([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(Array.from(kept.data)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    // The dropped tensor was registered when the scope ended: collecting it frees its storage.
    for (let i = 0; i < 50 && !storages[0].disposed; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(storages[0].disposed).toBe(true);
    expect(kept.storage.disposed).toBe(false);
    kept.dispose();
    expect(kept.storage.disposed).toBe(true);
  });
});
