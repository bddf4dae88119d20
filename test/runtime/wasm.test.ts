import { describe, expect, it } from 'vitest';
import { checkWasmSupport, initWasm, wasmReady } from '../../src/runtime/wasm.js';
import { WasmStorage, allocWasmTensor, copyToWasm } from '../../src/runtime/storage.js';
import { WASM_BASE64, WASM_BYTE_LENGTH, WASM_SHA256 } from '../../src/runtime/wasm-bytes.js';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor } from '../../src/tensor.js';

describe('wasm runtime loader', () => {
  it('wasm-bytes.ts matches wasm/peftjs.wasm (regenerate with `node scripts/gen-wasm-bytes.mjs`)', () => {
    const file = readFileSync(join(__dirname, '../../wasm/peftjs.wasm'));
    expect(Buffer.from(WASM_BASE64, 'base64').equals(file)).toBe(true);
    expect(WASM_BYTE_LENGTH).toBe(file.length);
    expect(WASM_SHA256).toBe(createHash('sha256').update(file).digest('hex'));
  });

  it('initWasm is idempotent and safe when called concurrently: one promise, one runtime', async () => {
    const p1 = initWasm();
    const p2 = initWasm();
    expect(p1).toBe(p2);
    const [a, b] = await Promise.all([p1, p2]);
    expect(a).toBe(b);
    expect(await initWasm()).toBe(a);
    expect(wasmReady()).toBe(true);
  });

  it('missing WebAssembly or SIMD gives a typed error', () => {
    expect(() => checkWasmSupport({ validate: () => false })).toThrowErrorMatchingInlineSnapshot(
      `[WasmRuntimeError: WebAssembly SIMD128 is not supported by this runtime: expected WebAssembly SIMD (Chrome 91+, Firefox 89+, Safari 16.4+, Node 16.4+, Deno, Bun), got WebAssembly.validate(simd probe) = false → at initWasm]`,
    );
    let code = '';
    try {
      checkWasmSupport(undefined as never);
    } catch (e) {
      code = (e as { code: string }).code;
    }
    // undefined means "use globalThis.WebAssembly", which exists here: no throw.
    expect(code).toBe('');
    try {
      checkWasmSupport({} as never);
    } catch (e) {
      code = (e as { code: string }).code;
    }
    expect(code).toBe('no_webassembly');
    expect(() => checkWasmSupport({} as never)).toThrowErrorMatchingInlineSnapshot(
      `[WasmRuntimeError: WebAssembly is not available in this runtime: expected a runtime with WebAssembly, got globalThis.WebAssembly undefined → at initWasm]`,
    );
    expect(() => checkWasmSupport()).not.toThrow();
  });

  it('the real SIMD probe validates on this engine', () => {
    expect(() => checkWasmSupport(WebAssembly)).not.toThrow();
  });

  it('tensor views survive memory growth; dispose frees (memory is reused)', async () => {
    const rt = await initWasm();
    const t = copyToWasm(rt, Tensor.f32([1, 2, 3, 4], [2, 2]));
    expect(t.device).toBe('wasm');
    const before = rt.memory.buffer.byteLength;
    const big = allocWasmTensor(rt, [64 << 20], 'u8'); // forces growth
    expect(rt.memory.buffer.byteLength).toBeGreaterThan(before);
    expect(Array.from(t.data)).toEqual([1, 2, 3, 4]);
    big.dispose();
    expect(big.storage.disposed).toBe(true);
    // A freed block is handed out again: allocating the same size does not grow memory.
    const grown = rt.memory.buffer.byteLength;
    const again = allocWasmTensor(rt, [64 << 20], 'u8');
    expect(rt.memory.buffer.byteLength).toBe(grown);
    again.dispose();
    t.dispose();
    expect(() => t.data).toThrowError(/tensor was disposed/);
    const p = (t.storage as WasmStorage).ptr;
    expect(p % 8).toBe(0); // dlmalloc alignment: enough for every dtype (v128 loads need none)
  });
});
