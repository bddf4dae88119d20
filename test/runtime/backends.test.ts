import { describe, expect, it } from 'vitest';
import { createBackend, defaultBackend, init, setDefaultBackend } from '../../src/backends/index.js';
import { JsBackend } from '../../src/backends/js.js';
import { WasmBackend } from '../../src/backends/wasm.js';

describe('backend selection', () => {
  it('defaultBackend() before init() throws a typed error that says what to do', () => {
    expect(() => defaultBackend()).toThrowErrorMatchingInlineSnapshot(
      `[BackendError: no default backend is set (call \`await init()\` first (or setDefaultBackend(await createBackend("js")))) → at defaultBackend]`,
    );
  });

  it('init() is idempotent and concurrency-safe; sets wasm as the default', async () => {
    const [a, b] = await Promise.all([init(), init()]);
    expect(a).toBe(b);
    expect(a).toBeInstanceOf(WasmBackend);
    expect(defaultBackend()).toBe(a);
    expect(await init()).toBe(a);
  });

  it('createBackend by name; unknown names are a typed error', async () => {
    expect(await createBackend('js')).toBeInstanceOf(JsBackend);
    expect(await createBackend('wasm')).toBeInstanceOf(WasmBackend);
    await expect(createBackend('tpu' as never)).rejects.toMatchObject({ code: 'unknown_backend' });
    const js = new JsBackend();
    setDefaultBackend(js);
    expect(defaultBackend()).toBe(js);
  });
});
