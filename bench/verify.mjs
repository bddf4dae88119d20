// Question: what does scoring m tokens in one forward cost against one decode step, layer by layer? Speculative
// decoding verifies γ drafts plus the last token as one batch of m = γ + 1 rows; it pays only while that costs little
// more than one step (docs/models.md, "When it pays": v(m)). For f32 and bf16 W stored as a Linear stores them (in
// panels), k = n = 4096, one thread, W cold (copies cycled), one run: the median time of a call at m = 1 … 8, and
// v(m) = its time ÷ the m = 1 time of the same round, median over rounds. Outputs checked: every row of the batched call
// equals that row alone, bit for bit (the kernels are batch-invariant).
// Usage: node verify.mjs [--quick]   (Deno: deno run -A verify.mjs)
import { loadLib } from './lib/ours.mjs';

const argv = globalThis.process?.argv ?? globalThis.Deno?.args ?? [];
const quick = argv.includes('--quick');
const { lib, error } = await loadLib();
if (!lib) throw new Error(error);
const { Tensor } = lib;
const be = await lib.createBackend('wasm', { threads: 1 });
const k = 4096, n = 4096, M = 8;
const runtime = globalThis.Deno ? `Deno ${Deno.version.deno}` : globalThis.Bun ? `Bun ${Bun.version}` : `Node ${process.versions.node}`;
let seed = 11;
const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
const wf = Float32Array.from({ length: n * k }, () => rnd() * 0.02);
const wb = Uint16Array.from(new Uint32Array(wf.buffer), (u) => u >>> 16);
const xs = Float32Array.from({ length: M * k }, rnd);
const rows = [];
for (const dtype of ['f32', 'bf16']) {
  const bytes = n * k * (dtype === 'bf16' ? 2 : 4);
  const copies = Math.max(2, Math.ceil((160 * 2 ** 20) / bytes));
  const Ws = Array.from({ length: copies }, () =>
    dtype === 'bf16' ? be.upload(Tensor.from(wb, [n, k], 'bf16'), { keepBf16: true, linearWeight: true }) : be.upload(Tensor.from(wf, [n, k], 'f32'), { linearWeight: true }),
  );
  let c = 0;
  const call = (m, from = 0) => {
    const y = be.linear(Tensor.from(xs.subarray(from * k, (from + m) * k), [m, k], 'f32'), Ws[c++ % copies], undefined, []);
    const out = new Float32Array(y.data);
    y.dispose();
    return out;
  };
  // Batch invariance, checked before timing: row i of the m-row call = row i alone.
  const alone = Array.from({ length: M }, (_, i) => call(1, i));
  for (let m = 2; m <= M; m++) {
    const y = call(m);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) if (!Object.is(y[i * n + j], alone[i][j])) throw new Error(`${dtype} m=${m}: row ${i} differs from the row alone at column ${j}`);
  }
  for (const t0 = performance.now(); performance.now() - t0 < (quick ? 200 : 800); ) for (let m = 1; m <= M; m++) call(m);
  const rounds = quick ? 3 : 11;
  const t = Array.from({ length: M + 1 }, () => []);
  for (let r = 0; r < rounds; r++)
    for (let m = 1; m <= M; m++) {
      const t0 = performance.now();
      for (let q = 0; q < copies; q++) call(m);
      t[m].push((performance.now() - t0) / copies);
    }
  const med = (v) => v.slice().sort((p, q) => p - q)[v.length >> 1];
  const row = [dtype];
  for (let m = 1; m <= M; m++) row.push(m === 1 ? `${med(t[1]).toFixed(2)} ms` : `${med(t[m].map((v, r) => v / t[1][r])).toFixed(2)}`);
  rows.push(row);
  for (const W of Ws) W.dispose();
}
console.log(`${runtime}; peftjs wasm build ${be.build}, one thread; k = n = ${k}, W in panels (as a Linear stores it), cold; ${quick ? 3 : 11} rounds\n`);
console.log(`| W | m = 1 (one step) | ${Array.from({ length: M - 1 }, (_, i) => `v(${i + 2})`).join(' | ')} |`);
console.log(`|---|---|${'---|'.repeat(M - 1)}`);
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
console.log(`\nv(m) = the time of one call on m rows ÷ the m = 1 call of the same round (median over rounds); every row of each batched call checked equal to that row alone, bit for bit.`);
