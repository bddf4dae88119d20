import { WasmRuntimeError } from '../errors.js';
import { type ThreadHandle, spawnThread } from './spawn-thread.js';
import { CTL, type ColumnKernels, SPIN_LOADS, claimChunks, kernelTable } from './thread-body.js';
import type { WasmRuntime } from './wasm.js';

/** Stack bytes each worker gets (the kernels use a few KiB: tile accumulators). */
const STACK_BYTES = 128 * 1024;
/**
 * Chunks start on multiples of this (the widest GEMV tile, cpp/linear.h PEFT_GEMV1_NR), so each chunk tiles as the
 * whole layer does. (Any cut gives the same bits: every tile width computes an element in the same order.)
 */
export const COLUMN_ALIGN = 16;
/**
 * Below this many multiply-adds (m·k·n) a linear stays on the calling thread: handing out chunks costs more. Workers
 * spin before they sleep (SPIN_LOADS), so a job reaches them in about a µs. Measured (pycoder, bf16, 2 threads, tokens/s;
 * 1 thread: decode 2,499, prefill S=16 5,342): 2^20 decode 2,305–2,335, prefill 4,961–8,073; 2^18 2,183–2,219 /
 * 8,223–8,376; 2^16 2,790–3,015 / 8,205–8,883; 2^15 2,753 / 8,596.
 */
export const THREAD_MIN_WORK = 1 << 16;

/**
 * A job wakes sleeping workers only if it has this many multiply-adds (m·k·n) or the pool ran a job in the last
 * LONE_GAP_MS; otherwise the workers still spinning take part and the sleeping ones sleep on (the caller claims the
 * chunks they would have). A wake is slow on a virtual machine: measured (2-vCPU KVM guest, Zen 5, Node 20), the
 * caller's Atomics.notify took 15–55 µs, the worker's first chunk started 75–120 µs after it, and in a process with
 * more threads the woken worker at times took the caller's CPU (the caller sat in notify for 0.8–1.7 ms while the
 * worker ran every chunk). A lone call of k = n = 2048, m = 1 (2^22, ~0.6 ms on one thread) ran 0.74–0.86× one thread
 * that way. In a stream of calls (a model's layers) one wake serves the calls that follow while the worker spins, so
 * there every job wakes them.
 */
export const WAKE_MIN_WORK = 1 << 23;
/** Milliseconds since the pool's last job within which a job counts as part of a stream (see WAKE_MIN_WORK). */
export const LONE_GAP_MS = 2;

/** Kernel ids of thread-body.ts. */
export const ThreadKernel = { F32Linear: 0, Bf16Linear: 1, QLinear: 2 } as const;
export type ThreadKernel = (typeof ThreadKernel)[keyof typeof ThreadKernel];

/** Multiply-adds a chunk keeps at least when chunks are cut finer than four per thread (~50 µs of one core). */
export const CHUNK_MIN_WORK = 1 << 19;
/** Chunks per thread at most: the threads finish within about one chunk of each other. */
export const MAX_CHUNKS_PER_THREAD = 16;

/**
 * Columns per chunk when `threads` share n columns of `colWork` multiply-adds each (m·k for a linear): four chunks
 * per thread, more (up to MAX_CHUNKS_PER_THREAD) while each keeps CHUNK_MIN_WORK; a multiple of COLUMN_ALIGN, at
 * least one group. Several chunks per thread, so a thread the OS has descheduled (or a worker that wakes late) costs
 * part of its share, not all of it; more of them for a long call, because the call ends when the last chunk does:
 * the idle tail is about half a chunk. Measured (AMD Zen 4, 2 threads, k = n = 4096, m = 1, f32 W, 4 chunks per
 * thread): the caller's own chunks ran at the one-thread speed, 2.5 ms of a 2.8–3.1 ms call; the rest was waiting for
 * the worker's last chunk. Every column is computed by one thread exactly as one thread computes it: any chunking
 * gives the same bits.
 */
export function chunkColumns(n: number, threads: number, colWork = 0): number {
  const per = Math.max(4, Math.min(MAX_CHUNKS_PER_THREAD, Math.floor((n * colWork) / CHUNK_MIN_WORK / threads)));
  const w = Math.ceil(n / (threads * per) / COLUMN_ALIGN) * COLUMN_ALIGN;
  return Math.max(COLUMN_ALIGN, Math.max(w, Math.ceil(n / 0xffff / COLUMN_ALIGN) * COLUMN_ALIGN));
}

/**
 * Workers that run kernels on a threads-build runtime's shared memory. A job is a kernel over the columns of y,
 * cut into chunks (multiples of COLUMN_ALIGN columns) that the caller and the workers claim one at a time (thread-body.ts);
 * the caller blocks until every chunk is done (`Atomics.wait`; a browser main thread, which may not block, spins),
 * so `linear` stays synchronous. One pool per runtime; it only grows.
 */
export class ThreadPool {
  private readonly ctl = new Int32Array(new SharedArrayBuffer(CTL.WORDS * 4));
  private readonly workers: ThreadHandle[] = [];
  private readonly stacks: number[] = [];
  private readonly canBlock: boolean;
  private growing: Promise<void> = Promise.resolve();
  /** performance.now() when the last job ended. */
  private lastEnd = -Infinity;
  private readonly fns: ReturnType<typeof kernelTable>;

  private constructor(private readonly rt: WasmRuntime) {
    let block = true;
    try {
      Atomics.wait(this.ctl, CTL.DONE, 1, 0); // value differs: returns at once where blocking is allowed, throws where not
    } catch {
      block = false;
    }
    this.canBlock = block;
    this.fns = kernelTable(rt.exports as unknown as ColumnKernels);
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
   * Columns [0, n) of a `kernel` call (its `args`: see kernelTable) in chunks of `width` columns (a multiple of
   * COLUMN_ALIGN) over the caller and workers 1 … threads−1; thread t uses scratch + t·stride. Returns when all are done.
   * `work`: the job's multiply-adds, which decide whether it wakes sleeping workers (WAKE_MIN_WORK).
   */
  run(kernel: ThreadKernel, args: readonly number[], n: number, width: number, scratch: number, stride: number, threads: number, work: number): void {
    const c = this.ctl;
    const chunks = Math.ceil(n / width);
    if (width % COLUMN_ALIGN !== 0 || chunks > 0xffff) throw new WasmRuntimeError('bad_option', 'bad chunking', { got: { width, chunks }, where: 'ThreadPool.run' });
    const seq = ((Atomics.load(c, CTL.SEQ) + 1) & 0x3fffffff) || 1;
    c[CTL.KERNEL] = kernel;
    c[CTL.CHUNKS] = chunks;
    c[CTL.WIDTH] = width;
    for (let a = 0; a < args.length; a++) c[CTL.ARGS + a] = args[a] | 0;
    c[CTL.N] = n;
    c[CTL.SCRATCH] = scratch | 0;
    c[CTL.STRIDE] = stride | 0;
    c[CTL.LIMIT] = threads;
    Atomics.store(c, CTL.DONE, 0);
    Atomics.store(c, CTL.ERRORS, 0);
    Atomics.store(c, CTL.TICKET, (seq & 0x7fff) << 16);
    Atomics.store(c, CTL.SEQ, seq);
    if (work >= WAKE_MIN_WORK || performance.now() - this.lastEnd < LONE_GAP_MS) Atomics.notify(c, CTL.SEQ);
    claimChunks(c, seq, 0, this.fns);
    for (let i = 0; i < SPIN_LOADS && Atomics.load(c, CTL.DONE) < chunks; i++); // the last chunks are usually close
    for (;;) {
      const d = Atomics.load(c, CTL.DONE);
      if (d >= chunks) break;
      if (this.canBlock) Atomics.wait(c, CTL.DONE, d, 1000);
    }
    this.lastEnd = performance.now();
    const failed = Atomics.load(c, CTL.ERRORS);
    if (failed) throw new WasmRuntimeError('worker_failed', 'a kernel trapped in a thread', { got: `${failed} of ${chunks} chunks`, where: 'ThreadPool.run' });
  }

  /** Ends every worker and frees their stacks (the pool is then empty; `get` starts new ones). */
  dispose(): void {
    Atomics.store(this.ctl, CTL.SEQ, -1);
    Atomics.notify(this.ctl, CTL.SEQ);
    for (const w of this.workers) w.terminate();
    for (const s of this.stacks) this.rt.free(s);
    this.workers.length = 0;
    this.stacks.length = 0;
    ThreadPool.pools.delete(this.rt);
  }
}
