/**
 * Layout of the control block (Int32Array over a SharedArrayBuffer) the caller and the kernel workers share:
 *   SEQ        job number, bumped per job (workers wait on it); -1 = exit
 *   TICKET     (SEQ & 0x7fff) << 16 | next chunk: a worker claims a chunk by compare-exchange, only for its own job,
 *              so one that wakes late never takes a chunk of a newer job
 *   DONE       chunks finished (the caller waits for DONE = chunks)      ERRORS  chunks that trapped
 *   KERNEL     0 = peft_f32_linear_cols, 1 = peft_f32xbf16_linear_cols
 *   CHUNKS, WIDTH   chunk count and columns per chunk (a multiple of COLUMN_ALIGN)
 *   ARGS..     m, n, k, x, w, y, ep;  SCRATCH, STRIDE: thread t's scratch is SCRATCH + t·STRIDE
 *   LIMIT      threads t < LIMIT take part (a backend may use fewer threads than the pool has)
 */
export const CTL = { SEQ: 0, TICKET: 1, DONE: 2, ERRORS: 3, KERNEL: 4, CHUNKS: 5, WIDTH: 6, ARGS: 7, SCRATCH: 14, STRIDE: 15, LIMIT: 16, WORDS: 17 } as const;

/**
 * The loop every participant (the caller as thread 0, each worker as thread `slot`) runs for job `seq`: claim chunks
 * until none are left, run the kernel on each chunk's columns, count it done. Dynamic chunks: a worker the OS has
 * descheduled simply claims fewer, and the result is the same (each column is computed by whoever claims it, exactly
 * as one thread computes it). Self-contained (only its parameters, Atomics and Math): the workers get its source.
 */
export function claimChunks(c: Int32Array, seq: number, slot: number, fns: readonly ((...a: number[]) => void)[]): void {
  const tag = (seq & 0x7fff) << 16;
  if (slot >= c[16]) return; // LIMIT: this job uses fewer threads
  for (;;) {
    const t = Atomics.load(c, 1);
    if ((t & ~0xffff) !== tag || (t & 0xffff) >= c[5]) return;
    if (Atomics.compareExchange(c, 1, t, t + 1) !== t) continue;
    const i = t & 0xffff;
    const w = c[6];
    const n = c[8];
    const j0 = i * w;
    const j1 = Math.min(n, j0 + w);
    try {
      fns[c[4]](c[7], n, c[9], j0, j1, c[10], c[11], c[12], c[13], c[14] + slot * c[15]);
    } catch {
      Atomics.add(c, 3, 1);
    }
    Atomics.add(c, 2, 1);
    Atomics.notify(c, 2);
  }
}

/**
 * The body every kernel worker runs, as source text (a worker is started from a string, so no file has to sit
 * beside the bundle). `d` = { module, memory, ctl, slot, stackTop }: it instantiates the threads build on the shared
 * memory, moves its stack to its own block, says 'ready', then serves jobs until SEQ is −1.
 */
export const THREAD_BODY = `function peftThread(d, post) {
  const claim = (${claimChunks.toString()});
  const noop = () => {};
  const ex = new WebAssembly.Instance(d.module, {
    env: { memory: d.memory, emscripten_notify_memory_growth: noop, __emscripten_init_main_thread_js: noop, emscripten_unwind_to_js_event_loop: noop },
    wasi_snapshot_preview1: { clock_time_get: () => 52 },
  }).exports;
  ex.stackRestore(d.stackTop);
  const fns = [ex.peft_f32_linear_cols, ex.peft_f32xbf16_linear_cols];
  const c = d.ctl;
  let seen = Atomics.load(c, 0);
  post('ready');
  for (;;) {
    Atomics.wait(c, 0, seen);
    const s = Atomics.load(c, 0);
    if (s < 0) return;
    if (s === seen) continue;
    seen = s;
    claim(c, s, d.slot, fns);
  }
}`;
