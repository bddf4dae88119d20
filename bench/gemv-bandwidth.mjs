// Question: does the m = 1 GEMV (decode) stream W as fast as this machine can read memory?  For f32, bf16 and
// 4-bit W, one run times peftjs's `linear` at m = 1 and plain wasm SIMD128 read loops (lib/bandwidth.mjs: the fastest
// of one, 8 and 16 streams) interleaved, round by round, and reports W bytes ÷ time as a fraction of the read loop's GB/s (issue 11's target:
// ≥ 80 %). Each format cycles through enough copies of W (≥ 160 MiB) that every call finds its W out of cache.
// f32 and bf16 W as a Linear stores them run in panels (cpp/linear_panel.h, linear_bf16.h: no tuner; at k = 4096 both
// sweep four parts of the panels in step, the streams tile); the same W row-major (compact, as any W not uploaded as a
// linear weight) runs each m = 1 tile (cpp/tuning.h) in the same rounds: the build's default, 8 × 2, and 'auto' (the
// tuner's pick after timing both on the first calls; the row names the tile it settled on).
// Usage: node gemv-bandwidth.mjs [--quick]   or   deno run --allow-read --allow-env gemv-bandwidth.mjs
import { bandwidthProbe } from './lib/bandwidth.mjs';
import { loadLib } from './lib/ours.mjs';

const quick = (globalThis.process?.argv ?? globalThis.Deno?.args ?? []).includes('--quick');
const { lib, error } = await loadLib();
if (!lib) throw new Error(error);
const be = await lib.createBackend('wasm', { threads: 1 }); // one thread, as the read loop; gemvTile 'auto'
// Same runtime, fixed tiles (the tile knob is set before every m = 1 call, so the three interleave freely).
const fixed = { build: await lib.createBackend('wasm', { threads: 1, gemvTile: 'build' }), '8x2': await lib.createBackend('wasm', { threads: 1, gemvTile: '8x2' }) };
const { Tensor } = lib;
const k = 4096, n = 4096, group = 64;
const runtime = globalThis.Deno ? `Deno ${Deno.version.deno}` : globalThis.Bun ? `Bun ${Bun.version}` : `Node ${process.versions.node}`;

let seed = 7;
const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
const f32 = (len, s) => Float32Array.from({ length: len }, () => rnd() * s);
const bf16 = (len) => Uint16Array.from({ length: len }, () => (0x3c00 + ((rnd() * 0x200) | 0)) & 0xffff);

const formats = {
  // f32 and bf16 W stored as a Linear stores them (`linearWeight`: in panels), and row-major.
  f32: { bytes: n * k * 4, panels: true, make: () => be.upload(Tensor.from(f32(n * k, 0.02), [n, k], 'f32'), { linearWeight: true }) },
  'f32 row-major': { bytes: n * k * 4, make: () => be.upload(Tensor.from(f32(n * k, 0.02), [n, k], 'f32')) },
  bf16: { bytes: n * k * 2, panels: true, make: () => be.upload(Tensor.from(bf16(n * k), [n, k], 'bf16'), { keepBf16: true, linearWeight: true }) },
  'bf16 row-major': { bytes: n * k * 2, make: () => be.upload(Tensor.from(bf16(n * k), [n, k], 'bf16'), { keepBf16: true }) },
  q4: {
    bytes: (n * k) / 2 + 2 * n * (k / group) * 4,
    make: () => ({
      w: be.upload(Tensor.from(Uint32Array.from({ length: (n * k) / 8 }, () => (rnd() * 2 ** 31) >>> 0), [n, k / 8], 'u32')),
      scales: be.upload(Tensor.from(f32(n * (k / group), 0.01), [n, k / group], 'f32')),
      biases: be.upload(Tensor.from(f32(n * (k / group), 0.01), [n, k / group], 'f32')),
      bits: 4, groupSize: group, k, n,
    }),
  },
};
const probe = await bandwidthProbe(quick ? 128 : 256);
const x = Tensor.from(f32(k, 1), [1, k], 'f32');
const rounds = quick ? 5 : 15;
const rows = [];
for (const [name, f] of Object.entries(formats)) {
  const copies = Math.max(1, Math.ceil((160 * 2 ** 20) / f.bytes));
  const ws = Array.from({ length: copies }, f.make);
  const call = (b, w) => {
    const y = w.w ? b.quantizedLinear(x, w, undefined, []) : b.linear(x, w, undefined, []);
    const out = new Float32Array(y.data);
    y.dispose();
    return out;
  };
  const quant = name === 'q4'; // one tile: the quantised GEMV is not tuned
  const oneTile = quant || f.panels; // panels: never tuned
  const dtype = name.startsWith('bf16') ? 'bf16' : 'f32';
  const tiles = oneTile ? { auto: be } : { build: fixed.build, '8x2': fixed['8x2'], auto: be };
  // Warm: optimised tier, pages faulted in, and the auto tuner settled on this shape (it times both tiles first).
  for (const b of Object.values(tiles)) for (const w of ws) call(b, w);
  const settled = () => be.gemvTuning().find((t) => t.k === k && t.n === n && t.dtype === dtype)?.state === 'settled';
  for (let i = 0; i < 64 && !oneTile && !settled(); i++) call(be, ws[i % copies]);
  const gemv = Object.fromEntries(Object.keys(tiles).map((t) => [t, []])), loop = [];
  for (let r = 0; r < rounds; r++) {
    for (const [t, b] of Object.entries(tiles)) {
      const t0 = performance.now();
      for (const w of ws) call(b, w);
      gemv[t].push((f.bytes * copies) / ((performance.now() - t0) / 1000) / 1e9);
    }
    loop.push(probe.measure(3));
  }
  const med = (a) => a.slice().sort((p, q) => p - q)[a.length >> 1];
  const tuned = be.gemvTuning().find((t) => t.k === k && t.n === n && t.dtype === dtype);
  const built = be.runtime.exports.peft_gemv1_tile(dtype === 'bf16' ? 1 : 0, 0);
  const labels = { build: `build's ${built >> 8}x${built & 255}`, '8x2': '8x2', auto: `auto → ${tuned?.tile ?? '?'} (${tuned?.state ?? 'untimed'})` };
  for (const t of Object.keys(tiles)) {
    const ratios = gemv[t].map((g, i) => g / loop[i]);
    rows.push([name, quant ? '—' : f.panels ? 'panels (4 streams, untuned)' : labels[t], (f.bytes / 2 ** 20).toFixed(0), copies, med(gemv[t]).toFixed(1), med(loop).toFixed(1), `${(med(ratios) * 100).toFixed(0)} %`]);
  }
  for (const w of ws) for (const t of w.w ? [w.w, w.scales, w.biases] : [w]) t.dispose();
}
console.log(`m = 1 GEMV vs a plain wasm read loop — ${runtime}, peftjs wasm build ${be.build}, k = n = ${k}, ${rounds} interleaved rounds (medians)\n`);
console.log('| W | m = 1 tile | MiB per W | copies cycled | GEMV GB/s | read loop GB/s | GEMV ÷ read loop (per round, median) |');
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
console.log(`\nRead loop: ${probe.method}.`);
