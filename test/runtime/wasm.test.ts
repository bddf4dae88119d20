import { describe, expect, it } from 'vitest';
import { RELAXED_SIMD_PROBE, checkWasmSupport, initWasm, selectWasmBuild, wasmReady } from '../../src/runtime/wasm.js';
import { WasmBackend } from '../../src/backends/wasm.js';
import { WasmStorage, allocWasmTensor, copyToWasm } from '../../src/runtime/storage.js';
import { WASM_BASE64, WASM_BYTE_LENGTH, WASM_MT_BASE64, WASM_MT_RELAXED_BASE64, WASM_MT_RELAXED_SHA256, WASM_MT_SHA256, WASM_RELAXED_BASE64, WASM_RELAXED_BYTE_LENGTH, WASM_RELAXED_SHA256, WASM_SHA256 } from '../../src/runtime/wasm-bytes.js';
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

  it('wasm-bytes.ts holds each module as one string literal: a chain of + parts cost esbuild 14 GB to fold', () => {
    const src = readFileSync(join(__dirname, '../../src/runtime/wasm-bytes.ts'), 'utf8');
    expect(src.match(/'\s*\+\s*'/g) ?? []).toEqual([]);
    expect(src.split('\n').length).toBeLessThan(40);
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
    for (const [name, b64, sha] of [['peftjs-mt', WASM_MT_BASE64, WASM_MT_SHA256], ['peftjs-mt-relaxed', WASM_MT_RELAXED_BASE64, WASM_MT_RELAXED_SHA256]]) {
      const f = readFileSync(join(__dirname, `../../wasm/${name}.wasm`));
      expect(Buffer.from(b64, 'base64').equals(f), name).toBe(true);
      expect(sha).toBe(createHash('sha256').update(f).digest('hex'));
    }
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

describe('wasm build selection (relaxed SIMD by feature detection)', () => {
  // A fake engine: validates everything except the modules `rejects` says no to.
  const engine = (relaxed: boolean) => ({
    validate: (b: Uint8Array) => relaxed || !bytesEqual(b, RELAXED_SIMD_PROBE),
  });
  const bytesEqual = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((v, i) => v === b[i]);

  it('auto picks relaxed-simd only where the relaxed probe validates; simd128 is always available', () => {
    expect(selectWasmBuild('auto', engine(true))).toBe('relaxed-simd');
    expect(selectWasmBuild('auto', engine(false))).toBe('simd128');
    expect(selectWasmBuild('simd128', engine(true))).toBe('simd128');
    expect(selectWasmBuild('relaxed-simd', engine(true))).toBe('relaxed-simd');
  });

  it('asking for relaxed-simd without it, or for an unknown build, is a typed error; a throwing validate counts as "no"', () => {
    expect(() => selectWasmBuild('relaxed-simd', engine(false))).toThrow(expect.objectContaining({ code: 'no_relaxed_simd' }));
    expect(() => selectWasmBuild('avx' as never, engine(true))).toThrow(expect.objectContaining({ code: 'bad_option' }));
    const throwing = { validate: (b: Uint8Array) => { if (bytesEqual(b, RELAXED_SIMD_PROBE)) throw new Error('x'); return true; } };
    expect(selectWasmBuild('auto', throwing)).toBe('simd128');
    expect(() => selectWasmBuild('auto', { validate: () => false })).toThrow(expect.objectContaining({ code: 'no_simd' }));
  });

  it('the probe is a well-formed module whose only novelty is f32x4.relaxed_madd (Node 20 has SIMD, not relaxed SIMD)', () => {
    // Same module with v128.bitselect (0xfd 0x52, also three v128 → v128) in place of relaxed_madd: valid SIMD128.
    const p = Array.from(RELAXED_SIMD_PROBE);
    const at = p.length - 4;
    expect(p.slice(at)).toEqual([0xfd, 0x85, 0x02, 0x0b]);
    const simd = new Uint8Array([...p.slice(0, at), 0xfd, 0x52, 0x0b]);
    simd[20] -= 1; // code section size
    simd[22] -= 1; // body size
    expect(WebAssembly.validate(simd)).toBe(true);
    const major = Number(process.versions.node.split('.')[0]);
    if (major < 22) expect(WebAssembly.validate(RELAXED_SIMD_PROBE)).toBe(false);
  });

  it('wasm-bytes.ts inlines the relaxed and the two threads builds too; the default backend says which build ran', async () => {
    const file = readFileSync(join(__dirname, '../../wasm/peftjs-relaxed.wasm'));
    expect(Buffer.from(WASM_RELAXED_BASE64, 'base64').equals(file)).toBe(true);
    expect(WASM_RELAXED_BYTE_LENGTH).toBe(file.length);
    expect(WASM_RELAXED_SHA256).toBe(createHash('sha256').update(file).digest('hex'));
    for (const [name, b64, sha] of [['peftjs-mt', WASM_MT_BASE64, WASM_MT_SHA256], ['peftjs-mt-relaxed', WASM_MT_RELAXED_BASE64, WASM_MT_RELAXED_SHA256]]) {
      const f = readFileSync(join(__dirname, `../../wasm/${name}.wasm`));
      expect(Buffer.from(b64, 'base64').equals(f), name).toBe(true);
      expect(sha).toBe(createHash('sha256').update(f).digest('hex'));
    }
    const rt = await initWasm();
    expect(rt.build).toBe(selectWasmBuild('auto'));
    const be = await WasmBackend.create({ build: 'simd128' });
    expect(be.build).toBe('simd128');
  });
});

describe('the committed wasm builds', () => {
  // f32x4.convert_i32x4_u (0xfd 0xfb 0x01) has no x86 instruction: V8 emulates it in ~10. clang 19 emits it for any
  // int → float convert whose input it can prove non-negative; the 4-bit decode ran 0.89× on two threads because of it.
  it('use no unsigned vector int → float convert (every convert is the signed one, one x86 instruction)', async () => {
    const { readdirSync, readFileSync } = await import('node:fs');
    const files = readdirSync('wasm').filter((f) => f.endsWith('.wasm'));
    expect(files.length).toBe(4);
    for (const f of files) {
      const b = readFileSync(`wasm/${f}`);
      let found = -1;
      for (let i = 0; i + 2 < b.length && found < 0; i++) if (b[i] === 0xfd && b[i + 1] === 0xfb && b[i + 2] === 0x01) found = i;
      expect(found, `${f}: f32x4.convert_i32x4_u at byte ${found}`).toBe(-1);
    }
  });
});
