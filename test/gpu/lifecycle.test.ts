// The zero-cost toggle and the backend's lifecycle on real WebGPU: off is bit-identical to the base kernel,
// 1,000 flips (with a live scale) allocate no buffer and compile no pipeline, dispatch counts per layer,
// typed errors for device loss / out-of-memory / wrong device / no WebGPU, and `auto`'s choice and recovery.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Backend, LoRADelta } from '../../src/backends/backend.js';
import { createAutoBackend, requestGpu, type WebGPUBackend } from '../../src/backends/webgpu/index.js';
import { BackendError } from '../../src/errors.js';
import { Tensor } from '../../src/tensor.js';
import { JsBackend } from '../../src/backends/js.js';
import { gpuBackend, nodeGpu } from './env.js';
import { compare, refLinear } from './golden.js';

function rand(shape: number[], seed: number): Tensor<'f32'> {
  let s = seed;
  const n = shape.reduce((a, b) => a * b, 1);
  return Tensor.f32(Array.from({ length: n }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) - 0.5), shape);
}
const bits = (a: { buffer: ArrayBufferLike; byteOffset: number; length: number }) => new Uint32Array(a.buffer, a.byteOffset, a.length);
function thrown(f: () => unknown): BackendError {
  try {
    f();
  } catch (e) {
    return e as BackendError;
  }
  throw new Error('did not throw');
}

let be: WebGPUBackend;
beforeAll(async () => {
  be = await gpuBackend();
});
afterAll(() => be.dispose());

describe.each([
  { m: 1, k: 37, n: 29, route: 'gemv (k-split shrink + gemv, 2 dispatches on)', onDispatches: 2 },
  { m: 17, k: 37, n: 29, route: 'gemm (shrink + gemm, 2 dispatches on)', onDispatches: 2 },
])('toggle m=$m k=$k n=$n: $route', ({ m, k, n, onDispatches }) => {
  it('off is bit-identical to the base kernel before and after any number of flips', async () => {
    const x = rand([m, k], 1), W = be.upload(rand([n, k], 2)), bias = be.upload(rand([n], 3));
    const d: LoRADelta = { a: be.upload(rand([k, 4], 4)), b: be.upload(rand([4, n], 5)), scale: 2 };
    const base = await be.linear(x, W, bias, []).read();
    const on = await be.linear(x, W, bias, [d]).read();
    const off = await be.linear(x, W, bias, []).read();
    expect(bits(off)).toEqual(bits(base));
    expect(bits(on)).not.toEqual(bits(base));
    // A fresh backend (new device, pipelines, buffers) gives the same bits.
    const other = await gpuBackend();
    expect(bits(await other.linear(x, other.upload(rand([n, k], 2)), other.upload(rand([n], 3)), []).read())).toEqual(bits(base));
    other.dispose();
  });

  it('1,000 flips with a changing scale allocate nothing, compile nothing, and dispatch 1 (off) / on-count', async () => {
    const x = rand([m, k], 11), W = be.upload(rand([n, k], 12));
    const d: LoRADelta = { a: be.upload(rand([k, 8], 13)), b: be.upload(rand([8, n], 14)), scale: 1 };
    be.linear(x, W, undefined, [d]).dispose();
    be.linear(x, W, undefined, []).dispose();
    const before = { bytes: be.pool.bytesAllocated, created: be.pool.buffersCreated, compiled: be.pipelines.compiled, uploads: be.stats.uploads };
    let dOff = 0, dOn = 0;
    for (let i = 0; i < 1000; i++) {
      const on = i % 2 === 0;
      const start = be.stats.dispatches;
      const y = be.linear(x, W, undefined, on ? [{ ...d, scale: i / 100 }] : []);
      if (on) dOn = be.stats.dispatches - start;
      else dOff = be.stats.dispatches - start;
      if (i === 998) {
        const ref = refLinear(x, rand([n, k], 12), undefined, [{ ...d, a: rand([k, 8], 13), b: rand([8, n], 14), scale: 9.98 }]);
        expect(compare(await y.read(), ref, 1e-3, y.shape)).toBeUndefined();
      }
      y.dispose();
    }
    expect({ bytes: be.pool.bytesAllocated, created: be.pool.buffersCreated, compiled: be.pipelines.compiled, uploads: be.stats.uploads }).toEqual(before);
    expect(dOff).toBe(1);
    expect(dOn).toBe(onDispatches);
  });
});

describe('dispatches and residency', () => {
  it('stacked adapters: one shrink per adapter + one expand kernel; the packed B is built once', () => {
    const x = rand([1, 16], 1), W = be.upload(rand([9, 16], 2));
    const ds = [0, 1].map((i) => ({ a: be.upload(rand([16, 3], 10 + i)), b: be.upload(rand([3, 9], 20 + i)), scale: 1 }));
    be.linear(x, W, undefined, ds).dispose(); // packs B once (2 lora_pack dispatches)
    const start = be.stats.dispatches;
    be.linear(x, W, undefined, ds).dispose();
    expect(be.stats.dispatches - start).toBe(3);
  });

  it('outputs stay on the GPU and chain into the next layer without a readback', async () => {
    const x = rand([2, 8], 1), W1 = rand([8, 8], 2), W2 = rand([5, 8], 3);
    const reads = be.stats.readbacks;
    const h = be.linear(x, be.upload(W1), undefined, []);
    const y = be.linear(h, be.upload(W2), undefined, []);
    expect(h.device).toBe('gpu');
    expect(be.stats.readbacks).toBe(reads);
    const ref = refLinear(Tensor.f32(refLinear(x, W1, undefined, []), [2, 8]), W2, undefined, []);
    expect(compare(await y.read(), ref, 1e-5, y.shape)).toBeUndefined();
    expect(be.stats.readbacks).toBe(reads + 1);
    expect(thrown(() => h.data).code).toBe('wrong_device');
  });

  it('upload is idempotent and pooled: dispose returns the buffer for reuse', () => {
    const t = be.upload(rand([4, 4], 1));
    expect(be.upload(t)).toBe(t);
    const inUse = be.pool.bytesInUse;
    t.dispose();
    expect(be.pool.bytesInUse).toBeLessThan(inUse);
  });
});

describe('errors', () => {
  it('a tensor from another backend is wrong_device', async () => {
    const other = await gpuBackend();
    const t = other.upload(rand([3, 3], 1));
    expect(thrown(() => be.linear(rand([1, 3], 2), t, undefined, [])).code).toBe('wrong_device');
    other.dispose();
  });

  it('a failed call returns its output and temporaries to the pool', () => {
    const W = be.upload(rand([5, 3], 1));
    const a = be.upload(rand([3, 2], 2));
    a.dispose();
    const inUse = be.pool.bytesInUse;
    const e = thrown(() => be.linear(rand([2, 3], 3), W, undefined, [{ a, b: be.upload(rand([2, 5], 4)), scale: 1 }]));
    expect(e.code).toBe('wrong_device');
    expect(be.pool.bytesInUse).toBe(inUse + 256); // only the B uploaded above stays in use
  });

  it('a buffer past maxBufferSize is gpu_out_of_memory', () => {
    const e = thrown(() => be.pool.acquire(be.device.limits.maxBufferSize + 1, 0x80, 'too big'));
    expect(e.code).toBe('gpu_out_of_memory');
    expect(e.message).toMatch(/^buffer larger than the device allows: expected ≤ \d+ bytes \(maxBufferSize\), got \d+ → at too big$/);
  });

  it('device loss gives device_lost on the next op and on read()', async () => {
    const lost = await gpuBackend();
    const W = lost.upload(rand([4, 4], 1));
    const y = lost.linear(rand([1, 4], 2), W, undefined, []);
    lost.device.destroy();
    await lost.device.lost;
    const e = thrown(() => lost.linear(rand([1, 4], 2), W, undefined, []));
    expect(e).toBeInstanceOf(BackendError);
    expect(e.code).toBe('device_lost');
    // The driver's own message follows in parentheses.
    expect(e.message).toMatch(/^the WebGPU device was lost: got destroyed/);
    await expect(y.read()).rejects.toMatchObject({ code: 'device_lost' });
  });

  it('no navigator.gpu is no_webgpu', async () => {
    const e = await requestGpu({}).catch((err: BackendError) => err);
    expect((e as BackendError).code).toBe('no_webgpu');
    expect((e as BackendError).message).toMatchInlineSnapshot(
      `"WebGPU is not available: expected navigator.gpu, got undefined (in Node pass {gpu} from the \`webgpu\` package; in Chromium use a secure context (or --enable-unsafe-webgpu))"`,
    );
  });
});

/** The transformer ops of a JsBackend, bound (the stand-in below only replaces the layer ops). */
function opsOf(js: JsBackend) {
  const names = ['zeros', 'rmsNorm', 'layerNorm', 'rope', 'addInPlace', 'swiglu', 'geluTanh', 'sliceColumns', 'sliceRows', 'kvWrite', 'attention'] as const;
  return Object.fromEntries(names.map((n) => [n, (js[n] as (...a: unknown[]) => unknown).bind(js)])) as Pick<JsBackend, (typeof names)[number]>;
}

/** A float64 stand-in for the wasm backend (the real one is built in parallel). */
function cpuStandIn(): Backend {
  return {
    ...opsOf(new JsBackend()),
    name: 'js',
    upload: (t) => t,
    linear: (x, w, bias, ds, rs) => Tensor.f32(refLinear(x, w, bias, ds, rs), [x.size / x.shape[x.shape.length - 1], w.shape[0]]),
    quantizedLinear: () => {
      throw new Error('not in the stand-in');
    },
    embedding: () => {
      throw new Error('not in the stand-in');
    },
  };
}

describe('auto', () => {
  // On a software adapter (SwiftShader, CI) 'auto' declines it; on a hardware GPU (the H200 runs) it takes it.
  it('says why it did not take WebGPU (software adapter, small work, none), warning once each; takes a hardware adapter', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const gpu = await nodeGpu();
    const ctx = await requestGpu({ gpu });
    const software = ctx.software;
    if (ctx.ownsDevice) ctx.device.destroy();
    const sw = await createAutoBackend({ gpu }, async () => cpuStandIn());
    expect(sw.name).toBe(software ? 'js' : 'webgpu');
    if (software) expect(sw.fallbackReason).toMatch(/software WebGPU adapter/);
    else expect(sw.fallbackReason).toBeUndefined();
    const small = await createAutoBackend({ gpu, allowSoftware: true, work: 1000 }, async () => cpuStandIn());
    expect(small.fallbackReason).toMatch(/below GPU_MIN_WORK/);
    const none = await createAutoBackend({}, async () => cpuStandIn());
    expect(none.fallbackReason).toMatch(/WebGPU is not available/);
    expect(warn).toHaveBeenCalledTimes(software ? 3 : 2);
    warn.mockRestore();
  });

  it('takes WebGPU when allowed, and after a device loss continues on the fallback with the same weights', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const auto = await createAutoBackend({ gpu: await nodeGpu(), allowSoftware: true }, async () => cpuStandIn());
    expect(auto.name).toBe('webgpu');
    expect(auto.fallbackReason).toBeUndefined();
    const x = rand([2, 6], 1), w = rand([5, 6], 2), a = rand([6, 2], 3), b = rand([2, 5], 4);
    const W = auto.upload(w), d = { a: auto.upload(a), b: auto.upload(b), scale: 3 };
    const ref = refLinear(x, w, undefined, [{ a, b, scale: 3 }]);
    expect(compare(await auto.linear(x, W, undefined, [d]).read(), ref, 1e-4, [2, 5])).toBeUndefined();
    const gpuBe = auto.current as WebGPUBackend;
    gpuBe.device.destroy();
    await gpuBe.device.lost;
    const y = auto.linear(x, W, undefined, [d]);
    expect(auto.name).toBe('js');
    expect(auto.fallbackReason).toMatch(/device was lost/);
    expect(compare(await y.read(), ref, 1e-6, [2, 5])).toBeUndefined();
    expect(warn).toHaveBeenCalledTimes(1);
    warn.mockRestore();
  });
});

describe('createBackend (src/backends/index.ts)', () => {
  it("'webgpu' gives the WebGPU backend; 'auto' on a software adapter says it took wasm, and why (a hardware one it takes)", async () => {
    const { createBackend } = await import('../../src/backends/index.js');
    const gpu = await nodeGpu();
    const web = await createBackend('webgpu', { gpu });
    expect(web.name).toBe('webgpu');
    const software = (web as WebGPUBackend).software;
    web.dispose?.();
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const auto = (await createBackend('auto', { gpu })) as Backend & { fallbackReason?: string };
    if (software) {
      expect(auto.name).toBe('wasm');
      expect(auto.fallbackReason).toMatch(/software WebGPU adapter/);
      expect(warn).toHaveBeenCalledOnce();
    } else {
      expect(auto.name).toBe('webgpu');
      expect(auto.fallbackReason).toBeUndefined();
      expect(warn).not.toHaveBeenCalled();
    }
    const forced = await createBackend('auto', { gpu, allowSoftware: true });
    expect(forced.name).toBe('webgpu');
    warn.mockRestore();
  });
});
