/**
 * The body every kernel worker runs, as source text (a worker is started from a string, so no file has to sit
 * beside the bundle). `d` = { module, memory, ctl, slot, stackTop }: it instantiates the threads build on the shared
 * memory, moves its stack to its own block, says 'ready', then serves jobs from its 16-word slot of `ctl` forever:
 *   [0] seq (the caller bumps it; < 0 = exit)  [1] done (the seq it finished)  [2] kernel id  [3..12] i32 args
 *   [14] 1 if the kernel trapped.
 * Kernel ids: 0 = peft_f32_linear_cols, 1 = peft_f32xbf16_linear_cols.
 */
export const THREAD_BODY = `function peftThread(d, post) {
  const noop = () => {};
  const ex = new WebAssembly.Instance(d.module, {
    env: { memory: d.memory, emscripten_notify_memory_growth: noop, __emscripten_init_main_thread_js: noop, emscripten_unwind_to_js_event_loop: noop },
    wasi_snapshot_preview1: { clock_time_get: () => 52 },
  }).exports;
  ex.stackRestore(d.stackTop);
  const fns = [ex.peft_f32_linear_cols, ex.peft_f32xbf16_linear_cols];
  const c = d.ctl, b = d.slot * 16;
  post('ready');
  let seen = 0;
  for (;;) {
    Atomics.wait(c, b, seen);
    const s = Atomics.load(c, b);
    if (s === seen) continue;
    if (s < 0) return;
    seen = s;
    let err = 0;
    try {
      fns[c[b + 2]](c[b + 3], c[b + 4], c[b + 5], c[b + 6], c[b + 7], c[b + 8], c[b + 9], c[b + 10], c[b + 11], c[b + 12]);
    } catch {
      err = 1;
    }
    c[b + 14] = err;
    Atomics.store(c, b + 1, s);
    Atomics.notify(c, b + 1);
  }
}`;
