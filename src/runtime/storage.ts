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
