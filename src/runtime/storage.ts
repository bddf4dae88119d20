import { DTYPES, type DType } from '../dtype.js';
import { Tensor, type Storage } from '../tensor.js';
import type { WasmRuntime } from './wasm.js';

/**
 * Storage over a malloc'd range of wasm linear memory. `bytes()` builds a fresh view on every call, so it
 * stays valid after memory growth; `dispose()` frees the range (once).
 */
export class WasmStorage implements Storage {
  readonly device = 'wasm' as const;
  disposed = false;

  /** `ptr`: byte offset (already `>>> 0`), `byteLength`: bytes owned. */
  constructor(
    readonly runtime: WasmRuntime,
    readonly ptr: number,
    readonly byteLength: number,
  ) {}

  bytes(): Uint8Array {
    return new Uint8Array(this.runtime.memory.buffer, this.ptr, this.byteLength);
  }
  read(): Promise<Uint8Array> {
    return Promise.resolve(this.bytes());
  }
  dispose(): void {
    if (!this.disposed) {
      this.disposed = true;
      this.runtime.free(this.ptr);
    }
  }
}

/** A new uninitialised tensor in wasm memory (`shape`, `dtype`). */
export function allocWasmTensor<D extends DType>(rt: WasmRuntime, shape: readonly number[], dtype: D): Tensor<D> {
  const bytes = shape.reduce((a, b) => a * b, 1) * DTYPES[dtype].bytes;
  return new Tensor(shape, dtype, new WasmStorage(rt, rt.malloc(bytes), bytes));
}

/** A copy of `t` in wasm memory (any device that can give its bytes synchronously: cpu or wasm). */
export function copyToWasm<D extends DType>(rt: WasmRuntime, t: Tensor<D>): Tensor<D> {
  const out = allocWasmTensor(rt, t.shape, t.dtype);
  out.storage.bytes().set(t.storage.bytes());
  return out;
}

/** The byte offset of a wasm-resident tensor, or undefined when it lives elsewhere (or in another runtime). */
export function wasmPtrOf(rt: WasmRuntime, t: Tensor): number | undefined {
  const s = t.storage;
  return s instanceof WasmStorage && s.runtime === rt && !s.disposed ? s.ptr : undefined;
}

/**
 * A 2-D f32 or bf16 weight `[rows, cols]` in wasm memory in panels of 4 rows, k-chunk by k-chunk, each panel one
 * contiguous run (f32: `[⌈cols/4⌉][4][4]`, cpp/linear_panel.h; bf16: `[⌈cols/8⌉][4][8]`, cpp/linear_bf16.h): the
 * layout the linear kernels stream fastest, read in place only by them (`panelOf`: they take it as `ldw = 0`). The
 * block starts on a 64-byte line (`ptr`; `base` is what malloc returned). To everything else it is a tensor like any
 * other: `bytes()` returns a compact row-major copy (a snapshot) and `wasmPtrOf` is undefined.
 */
export class PanelWasmStorage implements Storage {
  readonly device = 'wasm' as const;
  disposed = false;

  constructor(
    readonly runtime: WasmRuntime,
    readonly base: number,
    readonly ptr: number,
    readonly rows: number,
    readonly cols: number,
    readonly elemBytes: 4 | 2,
  ) {}

  get byteLength(): number {
    return this.rows * this.cols * this.elemBytes;
  }
  bytes(): Uint8Array {
    const rt = this.runtime;
    const tmp = rt.malloc(this.byteLength);
    try {
      const unpack = this.elemBytes === 4 ? rt.exports.peft_f32_unpack_panels : rt.exports.peft_bf16_unpack_panels;
      unpack(this.rows, this.cols, this.ptr, tmp);
      return rt.u8.slice(tmp, tmp + this.byteLength);
    } finally {
      rt.free(tmp);
    }
  }
  read(): Promise<Uint8Array> {
    return Promise.resolve(this.bytes());
  }
  dispose(): void {
    if (!this.disposed) {
      this.disposed = true;
      this.runtime.free(this.base);
    }
  }
}

/** A copy of the 2-D f32 or bf16 tensor `t` (cpu or wasm, any layout) in wasm memory in panels (PanelWasmStorage). */
export function copyToWasmPanels<D extends 'f32' | 'bf16'>(rt: WasmRuntime, t: Tensor<D>): Tensor<D> {
  const [rows, cols] = t.shape;
  const eb = t.dtype === 'f32' ? 4 : 2;
  const bytes = rt.exports.peft_weight_panel_bytes(rows, cols, eb) >>> 0;
  const base = rt.malloc(bytes + 60);
  const ptr = (base + 63) & ~63;
  const resident = wasmPtrOf(rt, t);
  let staged = 0;
  try {
    if (resident === undefined) {
      staged = rt.malloc(rows * cols * eb);
      rt.u8.set(t.storage.bytes(), staged);
    }
    (eb === 4 ? rt.exports.peft_f32_pack_panels : rt.exports.peft_bf16_pack_panels)(rows, cols, resident ?? staged, cols, ptr);
  } catch (e) {
    rt.free(base);
    throw e;
  } finally {
    if (staged) rt.free(staged);
  }
  return new Tensor(t.shape, t.dtype, new PanelWasmStorage(rt, base, ptr, rows, cols, eb));
}

/** The byte offset of a panel weight of `rt` (the linear kernels' `ldw = 0`), or undefined (another layout or runtime). */
export function panelOf(rt: WasmRuntime, t: Tensor): number | undefined {
  const s = t.storage;
  return s instanceof PanelWasmStorage && s.runtime === rt && !s.disposed && t.shape.length === 2 && t.shape[1] === s.cols && t.shape[0] === s.rows
    ? s.ptr
    : undefined;
}
