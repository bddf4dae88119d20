import { WasmRuntimeError } from '../errors.js';
import { WASM_BASE64, WASM_MT_BASE64, WASM_MT_RELAXED_BASE64, WASM_RELAXED_BASE64 } from './wasm-bytes.js';

/**
 * Loads wasm/peftjs.wasm (inlined as base64 in wasm-bytes.ts) with our own loader: emscripten's JS glue is
 * not used (it breaks on Node 20), the module is STANDALONE_WASM whose only import is
 * `env.emscripten_notify_memory_growth`. The module is compiled once; the *promise* is cached, so
 * `initWasm()` is idempotent and safe to call concurrently.
 */

/**
 * The parts of `WebAssembly.Memory` and of `WebAssembly` that the public types name, spelled out: a Node
 * consumer type-checking with `lib: ["es2022"]` and @types/node has no `WebAssembly` namespace (it is in the DOM lib).
 */
export interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  grow(delta: number): number;
}
export interface WasmValidator {
  validate(bytes: Uint8Array<ArrayBuffer>): boolean;
}

/** The raw C ABI of cpp/exports.cpp. Pointers and sizes are i32; read returned pointers as `p >>> 0`. */
export interface PeftWasmExports {
  readonly memory: WasmMemory;
  _initialize(): void;
  /** Sets the stack pointer (threads builds: each worker's own stack). */
  stackRestore?(sp: number): void;
  malloc(bytes: number): number;
  free(ptr: number): void;
  peft_abi_version(): number;
  peft_heap_bytes_in_use(): number;
  peft_quant_strip_rows(): number;
  /** Sets a speed-only tile choice (cpp/tuning.h: knob 0 = f32 m = 1 GEMV, 1 = bf16; value 0 = default, 1 = 8×2). 0 or -1. */
  peft_set_tuning(knob: number, value: number): number;
  /** The tile a knob value runs in this build: rows << 8 | k-steps per turn (-1: unknown knob or value). */
  peft_gemv1_tile(knob: number, value: number): number;
  peft_f32_linear_scratch_bytes(m: number, k: number): number;
  /** Bytes of an [n,k] weight of `elemBytes` (4: f32, 2: bf16) in panels of 4 rows (cpp/linear_panel.h, linear_bf16.h). */
  peft_weight_panel_bytes(n: number, k: number, elemBytes: number): number;
  /** The largest m a W in panels of `elemBytes` runs through the GEMV tiles at this k (above it, the GEMM). */
  peft_panel_gemv_max_m(k: number, elemBytes: number): number;
  /** dst = src [n,k] (rows lds ≥ k elements apart) in panels. */
  peft_f32_pack_panels(n: number, k: number, src: number, lds: number, dst: number): void;
  peft_bf16_pack_panels(n: number, k: number, src: number, lds: number, dst: number): void;
  /** dst [n,k] compact = the panel weight src. */
  peft_f32_unpack_panels(n: number, k: number, src: number, dst: number): void;
  peft_bf16_unpack_panels(n: number, k: number, src: number, dst: number): void;
  /** y [m,k] f32 = rows ids [m] (i32) of a weight in panels of `elemBytes` (4: f32, 2: bf16, widened exactly). */
  peft_panel_gather_rows(k: number, elemBytes: number, w: number, ids: number, m: number, y: number): void;
  /** W rows `ldw` ≥ k elements apart, or `ldw` = 0: W in panels (every f32 and bf16 linear export). */
  peft_f32_linear(m: number, n: number, k: number, x: number, w: number, ldw: number, y: number, ep: number, scratch: number): void;
  peft_f32_linear__scalar(m: number, n: number, k: number, x: number, w: number, ldw: number, y: number, ep: number, scratch: number): void;
  peft_f32_epilogue_rows(m: number, n: number, rows: number, y: number, ep: number): void;
  /**
   * Columns [j0, j1) of peft_f32_linear's y (one thread's share; the same bits as the whole call). `staged`: 0, or x
   * as the kernel stages it, done once for every thread (the f32 and bf16 GEMMs: peft_f32_stage_row_pairs; the
   * quantised GEMM: peft_f32_qlinear_stage).
   */
  peft_f32_linear_cols(m: number, n: number, k: number, j0: number, j1: number, x: number, w: number, ldw: number, y: number, ep: number, scratch: number, staged: number): void;
  peft_f32xbf16_linear_cols(m: number, n: number, k: number, j0: number, j1: number, x: number, w: number, ldw: number, y: number, ep: number, scratch: number, staged: number): void;
  peft_f32_qlinear_cols(m: number, n: number, k: number, bits: number, group: number, j0: number, j1: number, x: number, wq: number, scales: number, biases: number, scratch: number, y: number, ep: number, staged: number): void;
  /** Bytes of x [m,k] in row pairs (the f32 and bf16 GEMMs' packed x); staged = that for x. */
  peft_f32_row_pairs_bytes(m: number, k: number): number;
  peft_f32_stage_row_pairs(m: number, k: number, x: number, staged: number): void;
  /** Bytes of the quantised GEMM's prepared x [m,k] (xq, then the group sums); staged = that for x. */
  peft_f32_qlinear_staged_bytes(m: number, k: number, group: number): number;
  peft_f32_qlinear_stage(m: number, k: number, bits: number, group: number, x: number, staged: number): void;
  peft_f32xbf16_linear_scratch_bytes(m: number, k: number): number;
  peft_f32xbf16_linear(m: number, n: number, k: number, x: number, w: number, ldw: number, y: number, ep: number, scratch: number): void;
  peft_f32xbf16_linear__scalar(m: number, n: number, k: number, x: number, w: number, ldw: number, y: number, ep: number, scratch: number): void;
  peft_f32_lora_shrink(m: number, k: number, r: number, x: number, a: number, t: number, s: number): void;
  peft_f32_lora_shrink__scalar(m: number, k: number, r: number, x: number, a: number, t: number, s: number): void;
  peft_f32_lora_expand(m: number, n: number, r: number, t: number, b: number, y: number): void;
  peft_f32_lora_expand__scalar(m: number, n: number, r: number, t: number, b: number, y: number): void;
  peft_f32_dequantize(n: number, k: number, bits: number, group: number, wq: number, scales: number, biases: number, out: number): void;
  peft_f32_dequantize__scalar(n: number, k: number, bits: number, group: number, wq: number, scales: number, biases: number, out: number): void;
  peft_f32_qlinear_scratch_bytes(m: number, k: number): number;
  peft_f32_qlinear(m: number, n: number, k: number, bits: number, group: number, x: number, wq: number, scales: number, biases: number, scratch: number, y: number, ep: number): void;
  peft_f32_qlinear__scalar(m: number, n: number, k: number, bits: number, group: number, x: number, wq: number, scales: number, biases: number, scratch: number, y: number, ep: number): void;
  peft_f16_to_f32(n: number, src: number, dst: number): void;
  peft_f16_to_f32__scalar(n: number, src: number, dst: number): void;
  peft_bf16_to_f32(n: number, src: number, dst: number): void;
  peft_bf16_to_f32__scalar(n: number, src: number, dst: number): void;
  peft_f32_to_f16(n: number, src: number, dst: number): void;
  peft_f32_to_f16__scalar(n: number, src: number, dst: number): void;
  peft_f32_to_bf16(n: number, src: number, dst: number): void;
  peft_f32_to_bf16__scalar(n: number, src: number, dst: number): void;
  peft_f32_rms_norm(m: number, d: number, x: number, w: number, y: number, eps: number): void;
  peft_f32_rms_norm__scalar(m: number, d: number, x: number, w: number, y: number, eps: number): void;
  peft_f32_layer_norm(m: number, d: number, x: number, w: number, b: number, y: number, eps: number): void;
  peft_f32_layer_norm__scalar(m: number, d: number, x: number, w: number, b: number, y: number, eps: number): void;
  peft_f32_rope(m: number, heads: number, hd: number, x: number, cos: number, sin: number, start: number): void;
  peft_f32_rope__scalar(m: number, heads: number, hd: number, x: number, cos: number, sin: number, start: number): void;
  peft_f32_add_inplace(n: number, a: number, b: number): void;
  peft_f32_add_inplace__scalar(n: number, a: number, b: number): void;
  peft_f32_swiglu(n: number, g: number, u: number, y: number): void;
  peft_f32_swiglu__scalar(n: number, g: number, u: number, y: number): void;
  peft_f32_gelu_tanh(n: number, x: number, y: number): void;
  peft_f32_gelu_tanh__scalar(n: number, x: number, y: number): void;
  peft_f32_kv_write(m: number, kvHeads: number, hd: number, maxLen: number, start: number, src: number, cache: number): void;
  peft_f32_kv_write__scalar(m: number, kvHeads: number, hd: number, maxLen: number, start: number, src: number, cache: number): void;
  peft_f32_attention_scratch_bytes(nKeys: number): number;
  peft_f32_attention(m: number, heads: number, kvHeads: number, hd: number, maxLen: number, start: number, q: number, k: number, v: number, y: number, scale: number, scratch: number): void;
  peft_f32_attention__scalar(m: number, heads: number, kvHeads: number, hd: number, maxLen: number, start: number, q: number, k: number, v: number, y: number, scale: number, scratch: number): void;
}

/** The ABI version cpp/exports.cpp reports; bumped with any signature or struct-layout change. */
export const ABI_VERSION = 14;

/**
 * The smallest module that uses a SIMD128 instruction: `(func (result v128) i32.const 0 i32x4.splat)`.
 * `WebAssembly.validate` on it tells whether the engine has SIMD without compiling our module.
 */
const SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type section: () -> v128
  0x03, 0x02, 0x01, 0x00, // function section
  0x0a, 0x08, 0x01, 0x06, 0x00, 0x41, 0x00, 0xfd, 0x11, 0x0b, // code section, one body: i32.const 0; i32x4.splat; end
]);

/**
 * Throws `WasmRuntimeError('no_webassembly')` or `('no_simd')` when the engine cannot run peftjs.
 * `wasm` defaults to `globalThis.WebAssembly` (tests pass a fake).
 */
export function checkWasmSupport(wasm: WasmValidator | undefined = (globalThis as { WebAssembly?: typeof WebAssembly }).WebAssembly): void {
  if (!wasm || typeof wasm.validate !== 'function') {
    throw new WasmRuntimeError('no_webassembly', 'WebAssembly is not available in this runtime', {
      expected: 'a runtime with WebAssembly',
      got: 'globalThis.WebAssembly undefined',
      where: 'initWasm',
    });
  }
  if (!wasm.validate(SIMD_PROBE)) {
    throw new WasmRuntimeError('no_simd', 'WebAssembly SIMD128 is not supported by this runtime', {
      expected: 'WebAssembly SIMD (Chrome 91+, Firefox 89+, Safari 16.4+, Node 16.4+, Deno, Bun)',
      got: 'WebAssembly.validate(simd probe) = false',
      where: 'initWasm',
    });
  }
}

/**
 * The smallest module that uses relaxed SIMD: `(func (result v128) (f32x4.relaxed_madd (i32x4.splat (i32.const 0))
 * ×3))`, opcode 0xfd 0x105. Node 20 rejects it; Node ≥ 22, Deno 2, Chromium ≥ 114 accept it.
 */
export const RELAXED_SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type section: () -> v128
  0x03, 0x02, 0x01, 0x00, // function section
  0x0a, 0x13, 0x01, 0x11, 0x00, // code section, one body of 17 bytes, no locals
  0x41, 0x00, 0xfd, 0x11, 0x41, 0x00, 0xfd, 0x11, 0x41, 0x00, 0xfd, 0x11, // three i32x4.splat(0)
  0xfd, 0x85, 0x02, 0x0b, // f32x4.relaxed_madd; end
]);

/**
 * Which compiled module runs the kernels: `simd128` = wasm/peftjs.wasm (emscripten, SIMD128: the same bits on every
 * engine); `relaxed-simd` = wasm/peftjs-relaxed.wasm (clang-19, `f32x4.relaxed_madd` in the linear k-loops, see
 * cpp/madd.h: may differ from simd128, and between engines, in the last bits of each product's rounding).
 */
export type WasmBuild = 'simd128' | 'relaxed-simd';
/** `auto` (default): relaxed-simd where the engine validates RELAXED_SIMD_PROBE, else simd128. */
export type WasmBuildChoice = WasmBuild | 'auto';

/**
 * The build `choice` resolves to on this engine: `auto` probes `wasm.validate(RELAXED_SIMD_PROBE)`; asking for
 * `relaxed-simd` where the engine lacks it throws `WasmRuntimeError('no_relaxed_simd')` (never a compile error later).
 * `wasm` defaults to `globalThis.WebAssembly` (tests pass a fake).
 */
export function selectWasmBuild(
  choice: WasmBuildChoice = 'auto',
  wasm: WasmValidator | undefined = (globalThis as { WebAssembly?: typeof WebAssembly }).WebAssembly,
): WasmBuild {
  checkWasmSupport(wasm);
  if (choice === 'simd128') return 'simd128';
  let relaxed = false;
  try {
    relaxed = wasm!.validate(RELAXED_SIMD_PROBE as Uint8Array<ArrayBuffer>) === true;
  } catch {
    relaxed = false;
  }
  if (choice === 'relaxed-simd' && !relaxed) {
    throw new WasmRuntimeError('no_relaxed_simd', 'WebAssembly relaxed SIMD is not supported by this runtime', {
      expected: 'relaxed SIMD (Node 22+, Deno 2, Chromium 114+)',
      got: 'WebAssembly.validate(relaxed simd probe) = false',
      where: 'initWasm',
    });
  }
  if (choice !== 'auto' && choice !== 'relaxed-simd') {
    throw new WasmRuntimeError('bad_option', 'unknown wasm build', { expected: "'auto' | 'simd128' | 'relaxed-simd'", got: String(choice), where: 'initWasm' });
  }
  return relaxed ? 'relaxed-simd' : 'simd128';
}

function decodeBase64(b64: string): Uint8Array {
  const B = (globalThis as { Buffer?: { from(s: string, enc: string): Uint8Array } }).Buffer;
  if (B) {
    const b = B.from(b64, 'base64');
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  }
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/**
 * The instantiated module: raw exports plus memory views that are rebuilt whenever memory grows
 * (a grown memory detaches the old ArrayBuffer). Never keep a view across a call that may allocate.
 */
export class WasmRuntime {
  readonly exports: PeftWasmExports;
  /** Which compiled module this is (see WasmBuild). */
  readonly build: WasmBuild;
  /**
   * The compiled module and its shared memory when this is a threads build (wasm/peftjs-mt*.wasm): workers
   * instantiate the same module on the same memory (src/runtime/threads.ts). Undefined for the one-thread builds.
   */
  readonly shared?: { module: WebAssembly.Module; memory: WebAssembly.Memory };
  private buf: ArrayBuffer | undefined;
  private u8v!: Uint8Array;
  private f32v!: Float32Array;
  private u32v!: Uint32Array;

  constructor(exports: PeftWasmExports, build: WasmBuild = 'simd128', shared?: { module: WebAssembly.Module; memory: WebAssembly.Memory }) {
    this.exports = exports;
    this.build = build;
    this.shared = shared;
  }

  get memory(): WasmMemory {
    return this.exports.memory;
  }

  private refresh(): void {
    // A shared memory's buffer is a SharedArrayBuffer; typed arrays over it behave the same for our reads/writes.
    const b = this.exports.memory.buffer as ArrayBuffer;
    if (b !== this.buf) {
      this.buf = b;
      this.u8v = new Uint8Array(b);
      this.f32v = new Float32Array(b);
      this.u32v = new Uint32Array(b);
    }
  }
  /** Live byte view of the whole memory. */
  get u8(): Uint8Array {
    this.refresh();
    return this.u8v;
  }
  get f32(): Float32Array {
    this.refresh();
    return this.f32v;
  }
  get u32(): Uint32Array {
    this.refresh();
    return this.u32v;
  }

  /** malloc; throws `out_of_memory` when the 4 GiB limit (or the host) refuses. Returned pointers are 8-byte aligned (dlmalloc). */
  malloc(bytes: number): number {
    const p = this.exports.malloc(Math.max(bytes, 1)) >>> 0;
    if (p === 0) {
      throw new WasmRuntimeError('out_of_memory', 'wasm malloc failed', {
        expected: `${bytes} free bytes`,
        got: `memory at ${this.exports.memory.buffer.byteLength} bytes`,
        where: 'WasmRuntime.malloc',
      });
    }
    return p;
  }
  free(ptr: number): void {
    if (ptr) this.exports.free(ptr);
  }
  /** Bytes malloc'd and not yet freed (tensors, scratch): what leak tests compare. */
  get heapBytesInUse(): number {
    return this.exports.peft_heap_bytes_in_use() >>> 0;
  }
}

let pending: Promise<WasmRuntime> | undefined;
let ready: WasmRuntime | undefined;
const others = new Map<WasmBuild, Promise<WasmRuntime>>();
const sharedRuntimes = new Map<WasmBuild, Promise<WasmRuntime>>();

/**
 * Whether this engine can run the threads builds: SharedArrayBuffer and a shared WebAssembly.Memory (browsers:
 * only when cross-origin isolated). `why` says what is missing.
 */
export function sharedMemorySupport(): { ok: boolean; why?: string } {
  const g = globalThis as { SharedArrayBuffer?: unknown; crossOriginIsolated?: boolean; Atomics?: unknown };
  if (typeof g.SharedArrayBuffer !== 'function' || typeof g.Atomics !== 'object') {
    return { ok: false, why: g.crossOriginIsolated === false ? 'SharedArrayBuffer needs cross-origin isolation (COOP/COEP headers)' : 'no SharedArrayBuffer/Atomics' };
  }
  try {
    new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true } as WebAssembly.MemoryDescriptor);
    return { ok: true };
  } catch (e) {
    return { ok: false, why: `shared WebAssembly.Memory refused: ${String(e)}` };
  }
}

/**
 * A runtime of the threads build of `build` (wasm/peftjs-mt.wasm or -mt-relaxed.wasm) on its own shared memory,
 * created once per build; callers check `sharedMemorySupport()` first.
 */
export function initSharedWasm(build: WasmBuildChoice = 'auto'): Promise<WasmRuntime> {
  const b = selectWasmBuild(build);
  let p = sharedRuntimes.get(b);
  if (!p) {
    p = load(b, true);
    sharedRuntimes.set(b, p);
    p.catch(() => sharedRuntimes.delete(b));
  }
  return p;
}

/** The imports every instance of a threads build needs besides the memory: no-op pthread hooks of emscripten's -mt libc. */
export function sharedImports(memory: WebAssembly.Memory): WebAssembly.Imports {
  return {
    env: {
      memory,
      emscripten_notify_memory_growth: () => {},
      __emscripten_init_main_thread_js: () => {},
      emscripten_unwind_to_js_event_loop: () => {},
    },
    wasi_snapshot_preview1: { clock_time_get: () => 52 /* ENOSYS: nothing here reads clocks */ },
  };
}

/**
 * Compiles and instantiates the module once; every caller gets the same promise. The build is chosen by feature
 * detection (`selectWasmBuild('auto')`). `build` names one explicitly: a separate instance (own memory), cached per
 * build, used by tests and benchmarks to compare the two; the shared default runtime is unaffected.
 */
export function initWasm(build: WasmBuildChoice = 'auto'): Promise<WasmRuntime> {
  if (build !== 'auto') {
    const b = selectWasmBuild(build);
    let p = others.get(b);
    if (!p) {
      p = load(b);
      others.set(b, p);
      p.catch(() => others.delete(b));
    }
    return p;
  }
  if (!pending) {
    pending = Promise.resolve()
      .then(() => load(selectWasmBuild('auto')))
      .then(
      (rt) => (ready = rt),
      (e) => {
        pending = undefined; // a failed load may be retried
        throw e;
      },
    );
  }
  return pending;
}

/** The runtime if `initWasm()` has finished, else throws `not_initialized`. */
export function wasmRuntime(): WasmRuntime {
  if (!ready) {
    throw new WasmRuntimeError('not_initialized', 'the wasm runtime is not initialised', {
      detail: 'call `await init()` (or `await initWasm()`) first',
      where: 'wasmRuntime',
    });
  }
  return ready;
}

/** True once `initWasm()` has resolved. */
export function wasmReady(): boolean {
  return ready !== undefined;
}

async function load(build: WasmBuild, threads = false): Promise<WasmRuntime> {
  let instance: WebAssembly.Instance;
  let shared: { module: WebAssembly.Module; memory: WebAssembly.Memory } | undefined;
  try {
    const b64 = threads
      ? build === 'relaxed-simd' ? WASM_MT_RELAXED_BASE64 : WASM_MT_BASE64
      : build === 'relaxed-simd' ? WASM_RELAXED_BASE64 : WASM_BASE64;
    const module = await WebAssembly.compile(decodeBase64(b64) as Uint8Array<ArrayBuffer>);
    if (threads) {
      // 16 MiB to start, up to 4 GiB (the module's own limits); growth is seen by every instance at once.
      const memory = new WebAssembly.Memory({ initial: 256, maximum: 65536, shared: true } as WebAssembly.MemoryDescriptor);
      shared = { module, memory };
      instance = await WebAssembly.instantiate(module, sharedImports(memory));
    } else {
      instance = await WebAssembly.instantiate(module, {
        // Memory growth detaches the old buffer; WasmRuntime notices by buffer identity, nothing to do here.
        env: { emscripten_notify_memory_growth: () => {} },
      });
    }
  } catch (e) {
    throw new WasmRuntimeError('wasm_compile_failed', `could not compile the ${build} module`, {
      cause: e,
      detail: String(e),
      where: 'initWasm',
    });
  }
  const ex = (shared ? { ...instance.exports, memory: shared.memory } : instance.exports) as unknown as PeftWasmExports;
  ex._initialize();
  const abi = ex.peft_abi_version();
  if (abi !== ABI_VERSION) {
    throw new WasmRuntimeError('wasm_compile_failed', 'wasm ABI version mismatch', { expected: ABI_VERSION, got: abi, where: 'initWasm' });
  }
  return new WasmRuntime(ex, build, shared);
}
