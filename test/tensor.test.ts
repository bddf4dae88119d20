import { describe, expect, it } from 'vitest';
import { init } from '../src/backends/index.js';
import { BackendError, WasmRuntimeError } from '../src/errors.js';
import { allocWasmTensor } from '../src/runtime/storage.js';
import { wasmRuntime } from '../src/runtime/wasm.js';
import { Tensor } from '../src/tensor.js';

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
});
