// Question: how much do threads speed up the wasm linear (f32, bf16 and 4-bit W), next to one thread, measured in one run?
// Backends with threads = 1 and threads = T (default: every core) on the same weights, called in turn round by
// round (W cache-cold at k = n = 4096: copies cycled); each call copies y to JS. Prints the median time per call and
// the ratio. Then m = 1 against read loops of as many threads (lib/bandwidth.mjs): W bytes ÷ time as a fraction of
// what that many threads can read.
// Usage: node threads.mjs [--quick] [--threads T]   (Deno: deno run -A threads.mjs; Bun: bun threads.mjs)
import { bandwidthProbe, bandwidthProbeThreads } from './lib/bandwidth.mjs';
import { loadLib } from './lib/ours.mjs';

const argv = globalThis.process?.argv ?? globalThis.Deno?.args ?? [];
const quick = argv.includes('--quick');
const ti = argv.indexOf('--threads');
const { lib, error } = await loadLib();
if (!lib) throw new Error(error);
const { Tensor } = lib;
const many = await lib.createBackend('wasm', ti >= 0 ? { threads: Number(argv[ti + 1]) } : {});
const one = await lib.createBackend('wasm', { threads: 1 });
const k = 4096, n = 4096;
let seed = 1;
const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
const wf = Float32Array.from({ length: n * k }, () => rnd() * 0.02);
const wb = Uint16Array.from(new Uint32Array(wf.buffer), (u) => u >>> 16);
const runtime = globalThis.Deno ? `Deno ${Deno.version.deno}` : globalThis.Bun ? `Bun ${Bun.version}` : `Node ${process.versions.node}`;
console.log(`${runtime}; build ${many.build}; threads ${many.threads} vs 1${many.threadsNote ? ` (${many.threadsNote})` : ''}; k = n = ${k}\n`);
console.log('| W | m | 1 thread ms | ' + `${many.threads} threads ms | speed-up |`);
console.log('|---|---|---|---|---|');
const wq = Uint32Array.from({ length: (n * k) / 8 }, () => (rnd() * 2 ** 31) >>> 0);
const qs = Float32Array.from({ length: n * (k / 64) }, () => rnd() * 0.01);
const decode = []; // m = 1: [dtype, W bytes, ms on one thread, ms on T]
for (const dtype of ['f32', 'bf16', 'q4']) {
  const up = (be) =>
    dtype === 'q4'
      ? { w: be.upload(Tensor.from(wq, [n, k / 8], 'u32')), scales: be.upload(Tensor.from(qs, [n, k / 64], 'f32')), biases: be.upload(Tensor.from(qs, [n, k / 64], 'f32')), bits: 4, groupSize: 64, k, n, dispose() { this.w.dispose(); this.scales.dispose(); this.biases.dispose(); } }
      : dtype === 'bf16' ? be.upload(Tensor.from(wb, [n, k], 'bf16'), { keepBf16: true, linearWeight: true }) : be.upload(Tensor.from(wf, [n, k], 'f32'), { linearWeight: true });
  // Copies of W cycled call by call, at least 160 MiB of them, so every call reads W from memory as a model's decode
  // does (with one copy a one-thread m = 1 call found part of a 32 MiB W in cache: 33.5 GB/s, above the read loop).
  const bytes = dtype === 'q4' ? n * k / 2 : n * k * (dtype === 'bf16' ? 2 : 4);
  const copies = Math.max(2, Math.ceil((160 * 2 ** 20) / bytes));
  const W1s = Array.from({ length: copies }, () => up(one)), WTs = Array.from({ length: copies }, () => up(many));
  for (const m of quick ? [1, 64] : [1, 8, 64, 256]) {
    const x = Float32Array.from({ length: m * k }, rnd);
    const call = (be, Ws) => {
      let c = 0;
      return () => {
        const W = Ws[c++ % Ws.length];
        const y = W.bits ? be.quantizedLinear(Tensor.from(x, [m, k], 'f32'), W, undefined, []) : be.linear(Tensor.from(x, [m, k], 'f32'), W, undefined, []);
        const out = new Float32Array(y.data);
        y.dispose();
        return out;
      };
    };
    const f1 = call(one, W1s), fT = call(many, WTs);
    const a = f1(), b = fT();
    for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) throw new Error(`threads differ from one thread at ${i}`);
    // Warm up by time: V8 compiles wasm lazily in every thread, baseline first, and a worker's first calls of a kernel
    // can run there for tens of ms (4-bit m = 1 measured 0.89× one thread that way in 2 of 3 runs).
    for (const t0 = performance.now(); performance.now() - t0 < (quick ? 150 : 600); ) {
      f1();
      fT();
    }
    const rounds = quick ? 5 : m >= 64 ? 7 : 25;
    const t1 = [], tT = [];
    for (let r = 0; r < rounds; r++) {
      let t = performance.now();
      f1();
      t1.push(performance.now() - t);
      t = performance.now();
      fT();
      tT.push(performance.now() - t);
    }
    const med = (v) => v.slice().sort((p, q) => p - q)[v.length >> 1];
    console.log(`| ${dtype} | ${m} | ${med(t1).toFixed(2)} | ${med(tT).toFixed(2)} | ${(med(t1) / med(tT)).toFixed(2)}× |`);
    if (m === 1) decode.push([dtype, bytes, med(t1), med(tT)]);
  }
  for (const W of [...W1s, ...WTs]) W.dispose();
}
console.log('\nOutputs checked bit-identical between the two before timing.');

// The m = 1 rows against what this many threads can read (4-bit: its decode arithmetic bounds it, not the reads).
try {
  const probes = [await bandwidthProbe(quick ? 128 : 256), many.threads > 1 ? await bandwidthProbeThreads(many.threads, quick ? 128 : 256) : undefined];
  const bw = [[], []];
  for (let r = 0; r < 3; r++) for (const [i, p] of probes.entries()) if (p) bw[i].push(await p.measure(3));
  await probes[1]?.dispose();
  const med = (v) => v.slice().sort((p, q) => p - q)[v.length >> 1];
  const [r1, rT] = bw.map((v) => (v.length ? med(v) : undefined));
  const gbs = (bytes, ms) => bytes / ms / 1e6;
  console.log(`\nm = 1 against plain wasm read loops (one thread ${r1.toFixed(1)} GB/s${rT ? `, ${many.threads} threads at once ${rT.toFixed(1)} GB/s` : ''}):\n`);
  console.log(`| W | MiB | 1 thread GB/s | ÷ its read loop | ${many.threads} threads GB/s | ÷ their read loop |`);
  console.log('|---|---|---|---|---|---|');
  for (const [dtype, bytes, ms1, msT] of decode) {
    const g1 = gbs(bytes, ms1), gT = gbs(bytes, msT);
    console.log(`| ${dtype} | ${(bytes / 2 ** 20).toFixed(0)} | ${g1.toFixed(1)} | ${((g1 / r1) * 100).toFixed(0)} % | ${gT.toFixed(1)} | ${rT ? `${((gT / rT) * 100).toFixed(0)} %` : '—'} |`);
  }
} catch (e) {
  console.log(`\nm = 1 against read loops: not measured (${String(e?.message ?? e).split('\n')[0]}).`);
}
