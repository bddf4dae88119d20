/**
 * Layout of the control block (Int32Array over a SharedArrayBuffer) the caller and the kernel workers share:
 *   SEQ        job number, bumped per job (workers wait on it); -1 = exit
 *   TICKET     (SEQ & 0x7fff) << 16 | next chunk: a thread claims a chunk by compare-exchange, only for its own job,
 *              so one that wakes late never takes a chunk of a newer job
 *   DONE       chunks finished (the caller waits for DONE = CHUNKS)     ERRORS  chunks that trapped
 *   KERNEL     index into kernelTable()       CHUNKS, WIDTH  chunk count, columns per chunk (a multiple of COLUMN_ALIGN)
 *   N          columns of y                   SCRATCH, STRIDE  thread t's scratch is SCRATCH + t·STRIDE
 *   LIMIT      threads t < LIMIT take part (a backend may use fewer threads than the pool has)
 *   ARGS…      the kernel's arguments other than its column range and scratch (kernelTable says which)
 */
export const CTL = { SEQ: 0, TICKET: 1, DONE: 2, ERRORS: 3, KERNEL: 4, CHUNKS: 5, WIDTH: 6, N: 7, SCRATCH: 8, STRIDE: 9, LIMIT: 10, ARGS: 11, WORDS: 24 } as const;

/** The exports kernelTable calls (a subset of PeftWasmExports). */
export interface ColumnKernels {
  peft_f32_linear_cols(...a: number[]): void;
  peft_f32xbf16_linear_cols(...a: number[]): void;
  peft_f32_qlinear_cols(...a: number[]): void;
}

/**
 * The kernels a job can name, each called as (args, j0, j1, scratch): 0 f32 linear and 1 bf16 linear, args
 * m n k x w ldw y ep staged; 2 quantised linear, args m n k bits group x wq scales biases y ep staged (staged: x as
 * the kernel stages it, done once by the caller for every chunk, or 0). Self-contained (the workers get
 * its source); the exports are looked up per call, so a wrapped export (tests) is seen.
 */
export function kernelTable(ex: ColumnKernels): ((a: number[], j0: number, j1: number, sp: number) => void)[] {
  return [
    (a, j0, j1, sp) => ex.peft_f32_linear_cols(a[0], a[1], a[2], j0, j1, a[3], a[4], a[5], a[6], a[7], sp, a[8]),
    (a, j0, j1, sp) => ex.peft_f32xbf16_linear_cols(a[0], a[1], a[2], j0, j1, a[3], a[4], a[5], a[6], a[7], sp, a[8]),
    (a, j0, j1, sp) => ex.peft_f32_qlinear_cols(a[0], a[1], a[2], a[3], a[4], j0, j1, a[5], a[6], a[7], a[8], sp, a[9], a[10], a[11]),
  ];
}

/**
 * The loop every participant (the caller as thread 0, each worker as thread `slot`) runs for job `seq`: claim chunks
 * until none are left, run the kernel on each chunk's columns, count it done. Dynamic chunks: a worker the OS has
 * descheduled simply claims fewer, and the result is the same (each column is computed by whoever claims it, exactly
 * as one thread computes it). Self-contained (only its parameters, Atomics and Math): the workers get its source.
 */
export function claimChunks(c: Int32Array, seq: number, slot: number, fns: readonly ((a: number[], j0: number, j1: number, sp: number) => void)[]): void {
  const tag = (seq & 0x7fff) << 16;
  if (slot >= c[10]) return; // LIMIT
  let a: number[] | undefined;
  for (;;) {
    const t = Atomics.load(c, 1);
    if ((t & ~0xffff) !== tag || (t & 0xffff) >= c[5]) return;
    if (Atomics.compareExchange(c, 1, t, t + 1) !== t) continue;
    // Claimed: the job cannot complete (nor its words change) before this chunk is counted done.
    if (!a) a = Array.from(c.subarray(11, 24));
    const j0 = (t & 0xffff) * c[6];
    const j1 = Math.min(c[7], j0 + c[6]);
    try {
      fns[c[4]](a, j0, j1, c[8] + slot * c[9]);
    } catch {
      Atomics.add(c, 3, 1);
    }
    Atomics.add(c, 2, 1);
    Atomics.notify(c, 2);
  }
}

/**
 * Loads of the job word a waiting thread spins through before it sleeps (tens of µs): a model's next layer usually
 * comes sooner than a wake from Atomics.wait. Measured (Qwen2.5-0.5B shapes, bf16, 2 threads, decode): 29.8–30.1
 * tokens/s without, 31.5–34.1 with; one layer k = 896, n = 4864 at m = 1: 1.34× one thread without, 1.82× with.
 */
export const SPIN_LOADS = 1 << 15;

/**
 * The body every kernel worker runs, as source text (a worker is started from a string, so no file has to sit
 * beside the bundle). `d` = { module, memory, ctl, slot, stackTop }: it instantiates the threads build on the shared
 * memory, moves its stack to its own block, says 'ready', then serves jobs until SEQ is −1.
 */
export const THREAD_BODY = `function peftThread(d, post) {
  const SPIN = ${SPIN_LOADS};
  const claim = (${claimChunks.toString()});
  const table = (${kernelTable.toString()});
  const noop = () => {};
  const ex = new WebAssembly.Instance(d.module, {
    env: { memory: d.memory, emscripten_notify_memory_growth: noop, __emscripten_init_main_thread_js: noop, emscripten_unwind_to_js_event_loop: noop },
    wasi_snapshot_preview1: { clock_time_get: () => 52 },
  }).exports;
  ex.stackRestore(d.stackTop);
  const fns = table(ex);
  const c = d.ctl;
  let seen = Atomics.load(c, 0);
  post('ready');
  for (;;) {
    // Spin a little before sleeping (SPIN_LOADS): waking from Atomics.wait costs tens of µs.
    for (let i = 0; i < SPIN && Atomics.load(c, 0) === seen; i++);
    if (Atomics.load(c, 0) === seen) Atomics.wait(c, 0, seen);
    const s = Atomics.load(c, 0);
    if (s < 0) return;
    if (s === seen) continue;
    seen = s;
    claim(c, s, d.slot, fns);
  }
}`;
