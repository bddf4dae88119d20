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
 * A 2-D weight `[rows, cols]` in wasm memory with its rows `pitch ≥ cols` elements apart: the layout the linear
 * kernels stream fastest (cpp/linear.h `weight_row_stride`: rows of 4 KiB or more get 128 bytes of padding). Only the
 * linear kernels read it in place (`pitchedOf`). To everything else it is a tensor like any other: `bytes()` returns
 * a compact copy (a snapshot, so writing to it changes nothing) and `wasmPtrOf` is undefined, so generic consumers
 * (DoRA norms, merges, saving) read the usual row-major data.
 */
export class PitchedWasmStorage implements Storage {
  readonly device = 'wasm' as const;
  disposed = false;

  constructor(
    readonly runtime: WasmRuntime,
    readonly ptr: number,
    readonly rows: number,
    readonly cols: number,
    readonly pitch: number,
    readonly elemBytes: number,
  ) {}

  get byteLength(): number {
    return this.rows * this.cols * this.elemBytes;
  }
  bytes(): Uint8Array {
    const out = new Uint8Array(this.byteLength);
    const row = this.cols * this.elemBytes;
    const mem = this.runtime.u8;
    for (let i = 0; i < this.rows; i++) {
      const from = this.ptr + i * this.pitch * this.elemBytes;
      out.set(mem.subarray(from, from + row), i * row);
    }
    return out;
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

/** A copy of the 2-D tensor `t` (cpu or wasm, any layout) in wasm memory with rows `pitch` elements apart. */
export function copyToWasmPitched<D extends DType>(rt: WasmRuntime, t: Tensor<D>, pitch: number): Tensor<D> {
  const [rows, cols] = t.shape;
  const eb = DTYPES[t.dtype].bytes;
  const src = t.storage.bytes();
  const ptr = rt.malloc(rows * pitch * eb);
  const mem = rt.u8;
  for (let i = 0; i < rows; i++) {
    const to = ptr + i * pitch * eb;
    mem.set(src.subarray(i * cols * eb, (i + 1) * cols * eb), to);
    mem.fill(0, to + cols * eb, to + pitch * eb); // padding: never read, zeroed so memory stays deterministic
  }
  return new Tensor(t.shape, t.dtype, new PitchedWasmStorage(rt, ptr, rows, cols, pitch, eb));
}

/**
 * A 2-D f32 weight `[rows, cols]` in wasm memory in panels of 4 rows (cpp/linear_panel.h: each panel
 * `[⌈cols/4⌉][4][4]`, k-chunk by k-chunk, one contiguous run): the layout the f32 linear kernels stream fastest, read
 * in place only by them (`panelOf`: they take it as `ldw = 0`). The block starts on a 64-byte line (`ptr`; `base` is
 * what malloc returned). To everything else it is a tensor like any other: `bytes()` returns a compact row-major copy
 * (a snapshot) and `wasmPtrOf` is undefined.
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
  ) {}

  get byteLength(): number {
    return this.rows * this.cols * 4;
  }
  bytes(): Uint8Array {
    const rt = this.runtime;
    const tmp = rt.malloc(this.byteLength);
    try {
      rt.exports.peft_f32_unpack_panels(this.rows, this.cols, this.ptr, tmp);
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

/** A copy of the 2-D f32 tensor `t` (cpu or wasm, any layout) in wasm memory in panels (PanelWasmStorage). */
export function copyToWasmPanels(rt: WasmRuntime, t: Tensor<'f32'>): Tensor<'f32'> {
  const [rows, cols] = t.shape;
  const bytes = rt.exports.peft_weight_panel_bytes(rows, cols) >>> 0;
  const base = rt.malloc(bytes + 60);
  const ptr = (base + 63) & ~63;
  const resident = wasmPtrOf(rt, t);
  let staged = 0;
  try {
    if (resident === undefined) {
      staged = rt.malloc(rows * cols * 4);
      rt.u8.set(t.storage.bytes(), staged);
    }
    rt.exports.peft_f32_pack_panels(rows, cols, resident ?? staged, cols, ptr);
  } catch (e) {
    rt.free(base);
    throw e;
  } finally {
    if (staged) rt.free(staged);
  }
  return new Tensor(t.shape, 'f32', new PanelWasmStorage(rt, base, ptr, rows, cols));
}

/** The byte offset of a panel weight of `rt` (the linear kernels' `ldw = 0`), or undefined (another layout or runtime). */
export function panelOf(rt: WasmRuntime, t: Tensor): number | undefined {
  const s = t.storage;
  return s instanceof PanelWasmStorage && s.runtime === rt && !s.disposed && t.shape.length === 2 && t.shape[1] === s.cols && t.shape[0] === s.rows
    ? s.ptr
    : undefined;
}

/** The byte offset and row stride (elements) of a pitched weight of `rt`, or undefined (another layout or runtime). */
export function pitchedOf(rt: WasmRuntime, t: Tensor): { ptr: number; ldw: number } | undefined {
  const s = t.storage;
  return s instanceof PitchedWasmStorage && s.runtime === rt && !s.disposed && t.shape.length === 2 && t.shape[1] === s.cols
    ? { ptr: s.ptr, ldw: s.pitch }
    : undefined;
}
