// Single-thread memory read bandwidth, measured the way a decode step reads weights: wasm SIMD128 loops that load
// 16-byte vectors over a buffer far larger than any cache (256 MiB by default), one stream or several in step, with
// 8 independent accumulators so the adds never bind; the fastest loop is the bound. The module is spelled out in bytes below (lib/wasm-bytes.mjs: no toolchain needed).

import { leb, section, sleb, str } from './wasm-bytes.mjs';

/**
 * (module (memory (export "mem") PAGES)
 *   (func (export "sum") (param $p i32) (param $end i32) (result i32)
 *     (local v128 ×8)
 *     loop: for s = 0…S−1, u = 0…U−1: acc_(sU+u) mod 8 = i32x4.add(acc, v128.load offset=s·stride+16u ($p));
 *           $p += 16U; br_if loop ($p <u $end)
 *     return lane 0 of Σ acc_k))
 * S = 1, U = 8: one sequential stream, 128 bytes a turn. S = 8 or 16, U = 2: streams `stride` bytes apart, 32 bytes
 * of each a turn, the access pattern of the m = 1 GEMV (16 rows of W at once). Some cores reach far more bandwidth
 * with many streams in flight than with one (a 2-core Xeon: 12 GB/s with one, 21 with 8), so the probe takes the
 * fastest.
 */
function moduleBytes(pages, streams, unroll, stride) {
  const V128 = 0x7b;
  const body = [];
  body.push(0x01, 0x08, V128); // 8 locals of v128 (indices 2…9)
  body.push(0x03, 0x40); // loop
  for (let s = 0; s < streams; s++)
    for (let u = 0; u < unroll; u++) {
      const k = (s * unroll + u) % 8;
      body.push(0x20, 2 + k); // local.get acc_k
      body.push(0x20, 0x00); // local.get $p
      body.push(0xfd, 0x00, 0x04, ...leb(s * stride + 16 * u)); // v128.load align=16 offset
      body.push(0xfd, 0xae, 0x01); // i32x4.add
      body.push(0x21, 2 + k); // local.set acc_k
    }
  body.push(0x20, 0x00, 0x41, ...sleb(16 * unroll), 0x6a, 0x22, 0x00); // $p = $p + 16U (local.tee)
  body.push(0x20, 0x01, 0x49, 0x0d, 0x00); // $p <u $end → br_if loop
  body.push(0x0b); // end loop
  body.push(0x20, 2);
  for (let k = 1; k < 8; k++) body.push(0x20, 2 + k, 0xfd, 0xae, 0x01);
  body.push(0xfd, 0x1b, 0x00); // i32x4.extract_lane 0
  body.push(0x0b); // end func
  const fn = [...leb(body.length), ...body];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [0x01, 0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f]), // type: (i32, i32) → i32
    ...section(3, [0x01, 0x00]), // one function of type 0
    ...section(5, [0x01, 0x00, ...leb(pages)]), // memory, min = pages
    ...section(7, [0x02, ...str('mem'), 0x02, 0x00, ...str('sum'), 0x00, 0x00]), // exports
    ...section(10, [0x01, ...fn]),
  ]);
}

/**
 * A bandwidth probe over `mib` MiB: `measure(passes)` → GB/s (10⁹ bytes per second), the fastest of three read
 * loops (one stream, 8 streams, 16 streams), each the median of its passes; `measureEach(passes)` → each loop's.
 * The buffer is filled once (so every page is backed) before the first pass.
 */
export async function bandwidthProbe(mib = 256) {
  const bytes = mib * 1024 * 1024;
  const loops = [];
  for (const [streams, unroll] of [[1, 8], [8, 2], [16, 2]]) {
    // Stream s reads [s·stride, (s+1)·stride), all in step; streams 128 bytes off a power of two apart, as a Linear's
    // padded W rows (power-of-two apart they share cache sets).
    const stride = streams === 1 ? bytes : bytes / streams - 4096 + 128;
    const { instance } = await WebAssembly.instantiate(moduleBytes(bytes / 65536 + 1, streams, unroll, stride));
    const { sum, mem } = instance.exports;
    const u8 = new Uint8Array(mem.buffer, 65536, bytes);
    for (let i = 0; i < bytes; i += 4096) u8[i] = i & 0xff;
    const run = () => sum(65536, 65536 + stride);
    run(); // compile to the optimising tier, fault in
    loops.push({ streams, run, bytes: stride * streams });
  }
  const median = (l, passes) => {
    const ts = [];
    for (let i = 0; i < passes; i++) {
      const t0 = performance.now();
      l.run();
      ts.push(performance.now() - t0);
    }
    ts.sort((a, b) => a - b);
    return l.bytes / (ts[ts.length >> 1] / 1000) / 1e9;
  };
  const measureEach = (passes = 5) => Object.fromEntries(loops.map((l) => [l.streams, median(l, passes)]));
  return {
    bytes,
    method:
      `wasm SIMD128 read loops over ${mib} MiB, one thread, 8 accumulators: the fastest of one stream (v128.load ×8 ` +
      `a turn), 8 and 16 streams in step (v128.load ×2 of each a turn: the m = 1 GEMV reads 16 rows of W at once)`,
    measureEach,
    measure(passes = 5) {
      return Math.max(...Object.values(measureEach(passes)));
    },
  };
}

/**
 * The same read loops on `threads` threads at once (Node worker_threads), each over its own `mib` MiB: `measure(passes)`
 * → GB/s of all threads together (Σ of each thread's fastest loop; the threads start each loop together, so their
 * passes overlap). The bound for a decode that splits W's columns across that many threads.
 */
export async function bandwidthProbeThreads(threads, mib = 256) {
  const { Worker } = await import('node:worker_threads');
  const workers = await Promise.all(
    Array.from({ length: threads }, async () => {
      const w = new Worker(new URL('./bandwidth-worker.mjs', import.meta.url), { workerData: { mib } });
      await new Promise((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
      });
      return w;
    }),
  );
  const start = new Int32Array(new SharedArrayBuffer(4));
  return {
    method: `the same read loops on ${threads} threads at once, each over its own ${mib} MiB (Σ of each thread's fastest loop)`,
    async measure(passes = 5) {
      Atomics.store(start, 0, 0);
      const got = workers.map((w) => new Promise((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
      }));
      for (const w of workers) w.postMessage({ passes, start });
      await new Promise((r) => setTimeout(r, 20)); // every worker waiting on `start`
      Atomics.store(start, 0, 1);
      Atomics.notify(start, 0);
      return (await Promise.all(got)).reduce((a, b) => a + b, 0);
    },
    async dispose() {
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}
