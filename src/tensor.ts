import { DTYPES, type ArrayOf, type DType, type TypedArray, viewAs } from './dtype.js';
import { BackendError, WasmRuntimeError } from './errors.js';

/**
 * Where a tensor's bytes live. `cpu`: a JS ArrayBuffer. `wasm`: a malloc'd range of the wasm linear
 * memory (views are rebuilt on every access, so they survive memory growth). `gpu`: a GPUBuffer,
 * read back only by `await tensor.read()`.
 */
export interface Storage {
  readonly device: 'cpu' | 'wasm' | 'gpu';
  readonly byteLength: number;
  /** The bytes as a live view (cpu/wasm). GPU storage throws: use `Tensor.read()`. */
  bytes(): Uint8Array;
  /** Reads the bytes back (needed for gpu; immediate for cpu/wasm). */
  read(): Promise<Uint8Array>;
  dispose(): void;
  readonly disposed: boolean;
}

/** Storage over a JS ArrayBuffer; nothing to free. */
export class CpuStorage implements Storage {
  readonly device = 'cpu' as const;
  disposed = false;
  constructor(private readonly view: Uint8Array) {}
  get byteLength(): number {
    return this.view.byteLength;
  }
  bytes(): Uint8Array {
    return this.view;
  }
  read(): Promise<Uint8Array> {
    return Promise.resolve(this.view);
  }
  dispose(): void {
    this.disposed = true;
  }
}

/** Tensors made inside the innermost `deferFinalization`, registered when it ends. */
let deferred: Tensor[] | undefined;
let registerLate: (t: Tensor) => void;

/**
 * A tensor: shape + dtype + storage. Small and explicit: no broadcasting, no autograd.
 * Row-major, contiguous. Storage owned by wasm or the GPU is released by `dispose()`
 * (or `using t = …` via Symbol.dispose); a FinalizationRegistry frees it if the tensor is dropped.
 */
export class Tensor<D extends DType = DType> {
  readonly shape: readonly number[];
  readonly dtype: D;
  readonly storage: Storage;

  /** For a view (`reshape`): the tensor that owns the storage, kept alive as long as the view is. */
  readonly #owner?: Tensor;
  /** Element count, computed once (hot: every op reads it). */
  readonly #size: number;
  /** Registered with the finalizer (owners of wasm/gpu storage; inside `deferFinalization`, only at its end). */
  #registered = false;

  constructor(shape: readonly number[], dtype: D, storage: Storage, owner?: Tensor) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (n * DTYPES[dtype].bytes !== storage.byteLength) {
      throw new BackendError('shape_mismatch', 'tensor storage size does not match its shape', {
        expected: n * DTYPES[dtype].bytes,
        got: storage.byteLength,
        detail: `shape [${shape.join(',')}] ${dtype}`,
      });
    }
    this.shape = Object.freeze([...shape]);
    this.#size = n;
    this.dtype = dtype;
    this.storage = storage;
    this.#owner = owner;
    // Only the owner registers: a dropped view must never free storage its owner still uses.
    if (storage.device !== 'cpu' && !owner) {
      if (deferred) deferred.push(this);
      else this.#register();
    }
  }

  static {
    registerLate = (t) => {
      if (!t.#registered && !t.storage.disposed) t.#register();
    };
  }

  #register(): void {
    registry.register(this, this.storage, this);
    this.#registered = true;
  }

  /** Wraps a typed array (no copy). */
  static from<D extends DType>(data: ArrayOf<D>, shape: readonly number[], dtype: D): Tensor<D> {
    const u8 = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return new Tensor(shape, dtype, new CpuStorage(u8));
  }

  /** A new zero-filled CPU tensor. */
  static zeros<D extends DType>(shape: readonly number[], dtype: D): Tensor<D> {
    const n = shape.reduce((a, b) => a * b, 1);
    return new Tensor(shape, dtype, new CpuStorage(new Uint8Array(n * DTYPES[dtype].bytes)));
  }

  /** f32 CPU tensor from numbers. */
  static f32(data: ArrayLike<number>, shape: readonly number[]): Tensor<'f32'> {
    return Tensor.from(Float32Array.from(data), shape, 'f32');
  }

  get size(): number {
    return this.#size;
  }
  get ndim(): number {
    return this.shape.length;
  }
  get byteLength(): number {
    return this.storage.byteLength;
  }
  get device(): Storage['device'] {
    return this.storage.device;
  }

  /** A live typed view of the data (cpu or wasm). Do not keep it across calls that may grow wasm memory. */
  get data(): ArrayOf<D> {
    if (this.storage.disposed) throw new WasmRuntimeError('disposed', 'tensor was disposed', { detail: this.toString() });
    const b = this.storage.bytes();
    return viewAs(this.dtype, b.buffer, b.byteOffset, this.size);
  }

  /** Reads the data back into a fresh JS-owned typed array (works for every device). */
  async read(): Promise<ArrayOf<D>> {
    if (this.storage.disposed) throw new WasmRuntimeError('disposed', 'tensor was disposed', { detail: this.toString() });
    const b = await this.storage.read();
    const copy = new Uint8Array(b.byteLength);
    copy.set(b);
    return viewAs(this.dtype, copy.buffer, 0, this.size);
  }

  /** A JS-owned copy on the CPU (synchronous; not for gpu tensors). */
  toCpu(): Tensor<D> {
    const copy = new Uint8Array(this.byteLength);
    copy.set(this.storage.bytes());
    return new Tensor(this.shape, this.dtype, new CpuStorage(copy));
  }

  /** A view: same storage, new shape (same element count). Disposing the owner frees it; the view keeps the owner alive. */
  reshape(shape: readonly number[]): Tensor<D> {
    return new Tensor(shape, this.dtype, this.storage, this.#owner ?? this);
  }

  dispose(): void {
    if (!this.storage.disposed) {
      if (this.#registered) registry.unregister(this);
      this.storage.dispose();
    }
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    return `Tensor([${this.shape.join(', ')}], ${this.dtype}, ${this.storage.device})`;
  }
}

/** Backstop only: frees wasm/gpu storage of tensors dropped without dispose(). */
const registry = new FinalizationRegistry<Storage>((s) => {
  if (!s.disposed) s.dispose();
});

/**
 * Runs the synchronous `fn` with finalizer registration deferred: a wasm/gpu tensor created inside is registered
 * when `fn` returns or throws, if it is still undisposed, instead of when it is created. A forward makes and disposes
 * ~20 intermediates per layer, and registering plus unregistering each costs more than a small op does (~0.7 µs, 2 %
 * of a pycoder prefill of 16 tokens). The tensors are held here until then, so none can be collected unregistered:
 * the backstop covers exactly what it covered before (a forward's returned logits, anything it leaked or grew, e.g.
 * a RoPE table), only later.
 */
export function deferFinalization<T>(fn: () => T): T {
  const outer = deferred;
  const mine: Tensor[] = [];
  deferred = mine;
  try {
    return fn();
  } finally {
    deferred = outer;
    for (const t of mine) registerLate(t);
  }
}

export type { DType, TypedArray };
