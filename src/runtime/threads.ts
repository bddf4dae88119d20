import { WasmRuntimeError } from '../errors.js';
import { type ThreadHandle, spawnThread } from './spawn-thread.js';
import type { WasmRuntime } from './wasm.js';

/** Stack bytes each worker gets (the kernels use a few KiB: tile accumulators). */
const STACK_BYTES = 128 * 1024;
/** Column ranges start on multiples of this (the widest GEMV tile), so each thread's tiling is the one-thread tiling. */
export const COLUMN_ALIGN = 8;
/** Below this many multiply-adds (m·k·n) a linear stays on the calling thread: waking workers costs more. */
export const THREAD_MIN_WORK = 1 << 20;

/** Kernel ids of thread-body.ts. */
export const ThreadKernel = { F32Linear: 0, Bf16Linear: 1 } as const;
export type ThreadKernel = (typeof ThreadKernel)[keyof typeof ThreadKernel];

/**
 * The column ranges [b[t], b[t+1]) that split n columns over `parts` threads: as even as possible in whole groups
 * of COLUMN_ALIGN (the last takes the remainder). Every output element belongs to one range and is computed there
 * exactly as a one-thread call computes it, so any split gives the same bits.
 */
export function splitColumns(n: number, parts: number): number[] {
  const groups = Math.ceil(n / COLUMN_ALIGN);
  const p = Math.max(1, Math.min(parts, groups));
  const b = [0];
  for (let t = 1; t < p; t++) b.push(Math.min(n, Math.round((groups * t) / p) * COLUMN_ALIGN));
  b.push(n);
  return b;
}

/**
 * Workers that run kernels on a threads-build runtime's shared memory. Jobs are posted through a SharedArrayBuffer
 * (`Atomics.notify`) and the caller blocks until all are done (`Atomics.wait`; a browser main thread, which may not
 * block, spins on `Atomics.load`), so `linear` stays synchronous. One pool per runtime; it only grows.
 */
export class ThreadPool {
  private readonly ctl = new Int32Array(new SharedArrayBuffer(64 * 16 * 4));
  private readonly workers: ThreadHandle[] = [];
  private readonly stacks: number[] = [];
  private seq = 0;
  private readonly canBlock: boolean;
  private growing: Promise<void> = Promise.resolve();

  private constructor(private readonly rt: WasmRuntime) {
    let block = true;
    try {
      Atomics.wait(this.ctl, 0, 1, 0); // value differs: returns at once where blocking is allowed, throws where not
    } catch {
      block = false;
    }
    this.canBlock = block;
  }

  private static pools = new WeakMap<WasmRuntime, ThreadPool>();

  /** The pool of `rt` (a threads build) with at least `workers` workers (at most 63). */
  static async get(rt: WasmRuntime, workers: number): Promise<ThreadPool> {
    let p = ThreadPool.pools.get(rt);
    if (!p) ThreadPool.pools.set(rt, (p = new ThreadPool(rt)));
    await p.grow(Math.min(workers, 63));
    return p;
  }

  /** Workers started. */
  get size(): number {
    return this.workers.length;
  }

  private grow(n: number): Promise<void> {
    this.growing = this.growing.then(async () => {
      const sh = this.rt.shared;
      if (!sh) throw new WasmRuntimeError('bad_option', 'threads need the shared-memory build', { where: 'ThreadPool' });
      while (this.workers.length < n) {
        const slot = this.workers.length + 1;
        const stack = this.rt.malloc(STACK_BYTES);
        const stackTop = (stack + STACK_BYTES) & ~15;
        this.workers.push(await spawnThread({ module: sh.module, memory: sh.memory, ctl: this.ctl, slot, stackTop }));
        this.stacks.push(stack);
      }
    });
    return this.growing;
  }

  /**
   * Runs `kernel` over column ranges: `jobs[t]` = its 10 i32 arguments for thread t. Thread 0 is the caller
   * (`own()` runs there, after the workers are started); jobs[1…] go to workers 0… . Returns when all are done.
   */
  run(kernel: ThreadKernel, jobs: readonly number[][], own: () => void): void {
    const c = this.ctl;
    const seq = ++this.seq;
    const used = jobs.length - 1;
    if (used > this.workers.length) throw new WasmRuntimeError('bad_option', 'more jobs than workers', { expected: `≤ ${this.workers.length + 1}`, got: jobs.length, where: 'ThreadPool.run' });
    for (let t = 1; t <= used; t++) {
      const b = t * 16;
      c[b + 2] = kernel;
      for (let a = 0; a < 10; a++) c[b + 3 + a] = jobs[t][a] | 0;
      c[b + 14] = 0;
      Atomics.store(c, b, seq);
      Atomics.notify(c, b);
    }
    let ownError: unknown;
    try {
      own();
    } catch (e) {
      ownError = e;
    }
    let failed = 0;
    for (let t = 1; t <= used; t++) {
      const b = t * 16;
      for (;;) {
        const d = Atomics.load(c, b + 1);
        if (d === seq) break;
        if (this.canBlock) Atomics.wait(c, b + 1, d, 1000);
      }
      failed += c[b + 14];
    }
    if (ownError) throw ownError;
    if (failed) throw new WasmRuntimeError('worker_failed', 'a kernel trapped in a worker thread', { got: `${failed} of ${used} workers`, where: 'ThreadPool.run' });
  }

  /** Ends every worker and frees their stacks (the pool is then empty; `get` starts new ones). */
  dispose(): void {
    for (let t = 1; t <= this.workers.length; t++) {
      Atomics.store(this.ctl, t * 16, -1);
      Atomics.notify(this.ctl, t * 16);
    }
    for (const w of this.workers) w.terminate();
    for (const s of this.stacks) this.rt.free(s);
    this.workers.length = 0;
    this.stacks.length = 0;
    ThreadPool.pools.delete(this.rt);
  }
}
