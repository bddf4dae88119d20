// peftjs WebGPU linear (new tile rule = auto, old tile rule forced) vs tfjs-backend-webgpu, f32, k = n, in rounds:
// each round times every engine once (chain: N forwards on device-resident x, one read), order rotating; the
// result per engine is its fastest round (the H200 host is shared: a slow round is interference, not the kernel).
// Checks each engine's first rows against the float64 js backend. Usage: node scripts/gpu/probe.mjs ROOT [rounds]
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { join, resolve } from 'node:path';

const ROOT = resolve(process.argv[2] ?? '.');
const ROUNDS = +(process.argv[3] ?? 7);
const req = createRequire(join(ROOT, 'package.json'));
const { create, globals } = await import(pathToFileURL(req.resolve('webgpu')).href);
Object.assign(globalThis, globals);
const gpu = create([]);
globalThis.navigator ??= {};
Object.defineProperty(globalThis.navigator, 'gpu', { value: gpu, configurable: true });
const lib = await import(pathToFileURL(join(ROOT, 'dist/index.js')).href);
const { Tensor } = lib;
const { randomF32 } = await import(pathToFileURL(join(ROOT, 'bench/lib/random.mjs')).href);
const tf = req('@tensorflow/tfjs-core');
req('@tensorflow/tfjs-backend-webgpu');
await tf.setBackend('webgpu');
await tf.ready();
const js = await lib.createBackend('js');
const auto = await lib.createBackend('webgpu', { gpu });
const forced = {};
for (const t of ['S', 'M', 'L']) forced[t] = await lib.createBackend('webgpu', { gpu, gemmTile: t });
/** The rule before 445319c: L from 256 workgroups, M from 128 (and m > 32), else S. */
const oldTile = (m, n) => {
  const g = (bm) => Math.ceil(m / bm) * Math.ceil(n / 64);
  return g(128) >= 256 ? 'L' : g(64) >= 128 && m > 32 ? 'M' : 'S';
};
const relErr = (y, r) => {
  let e = 0, mx = 0;
  for (let i = 0; i < r.length; i++) { e = Math.max(e, Math.abs(y[i] - r[i])); mx = Math.max(mx, Math.abs(r[i])); }
  return e / mx;
};
const S = 2;
for (const size of (process.env.SMOKE ? [64] : [4096, 8192])) {
  const k = size, n = size;
  const w = randomF32(n * k, 1, 1 / Math.sqrt(k));
  const bias = randomF32(n, 2, 0.1);
  const tW = tf.tensor2d(w, [n, k]);
  const tB = tf.tensor1d(bias);
  const gpuW = new Map();
  const Wof = (be) => gpuW.get(be) ?? gpuW.set(be, { W: be.upload(Tensor.from(w, [n, k], 'f32')), B: be.upload(Tensor.from(bias, [n], 'f32')) }).get(be);
  for (const r of [0, 16]) {
    const a = r ? randomF32(k * r, 3, 1 / Math.sqrt(k)) : null;
    const b = r ? randomF32(r * n, 4, 1 / Math.sqrt(r)) : null;
    const tA = r ? tf.tensor2d(a, [k, r]) : null;
    const tBB = r ? tf.tensor2d(b, [r, n]) : null;
    for (const m of (process.env.SMOKE ? [1, 16] : [1, 8, 64, 128, 256, 512, 1024])) {
      const x = randomF32(m * k, 100 + m, 1);
      const flops = m * (2 * k * n + (r ? 2 * r * (k + n) : 0));
      const N = Math.max(5, Math.min(200, Math.round(1e11 / flops)));
      const mCheck = Math.min(m, 4);
      const ref = await js.linear(Tensor.from(x.subarray(0, mCheck * k), [mCheck, k], 'f32'), Tensor.from(w, [n, k], 'f32'), Tensor.from(bias, [n], 'f32'), r ? [{ a: Tensor.from(a, [k, r], 'f32'), b: Tensor.from(b, [r, n], 'f32'), scale: S }] : []).read();
      const engines = {};
      const ours = (be) => {
        const { W, B } = Wof(be);
        const deltas = r ? [{ a: be.upload(Tensor.from(a, [k, r], 'f32')), b: be.upload(Tensor.from(b, [r, n], 'f32')), scale: S }] : [];
        const xg = be.upload(Tensor.from(x, [m, k], 'f32'));
        return {
          check: async () => { const y = be.linear(xg, W, B, deltas); const v = await y.read(); y.dispose(); return relErr(v.subarray(0, mCheck * n), ref); },
          chain: async () => { let last; for (let i = 0; i < N; i++) { last?.dispose(); last = be.linear(xg, W, B, deltas); } await last.read(); last.dispose(); },
          done: () => { xg.dispose(); deltas.forEach((d) => { d.a.dispose(); d.b.dispose(); }); },
        };
      };
      engines.peftjs = ours(auto);
      const ot = oldTile(m, n);
      if (m > 8) engines[`peftjs old rule (${ot})`] = ours(forced[ot]);
      const tx = tf.tensor2d(x, [m, k]);
      const fwd = () => tf.tidy(() => { let y = tf.add(tf.matMul(tx, tW, false, true), tB); if (r) y = tf.add(y, tf.mul(tf.matMul(tf.matMul(tx, tA), tBB), S)); return y; });
      engines.tfjs = {
        check: async () => { const y = fwd(); const v = await y.data(); y.dispose(); return relErr(v.subarray(0, mCheck * n), ref); },
        chain: async () => { let last; for (let i = 0; i < N; i++) { last?.dispose(); last = fwd(); } await last.data(); last.dispose(); },
        done: () => tx.dispose(),
      };
      const names = Object.keys(engines);
      const row = { size, r, m, N, kernel: m > 8 ? auto.kernelFor('linear', m, k, n, { ranks: r ? [r] : [] }).kernels.join('+') : undefined, err: {}, best: {} };
      for (const e of names) { row.err[e] = +(await engines[e].check()).toExponential(1); await engines[e].chain(); }
      for (let round = 0; round < ROUNDS; round++) {
        for (let j = 0; j < names.length; j++) {
          const e = names[(round + j) % names.length];
          const t0 = performance.now();
          await engines[e].chain();
          const ms = (performance.now() - t0) / N;
          row.best[e] = Math.min(row.best[e] ?? Infinity, ms);
        }
      }
      row.gflops = Object.fromEntries(names.map((e) => [e, Math.round(flops / row.best[e] / 1e6)]));
      console.log(JSON.stringify(row));
      for (const e of names) engines[e].done();
    }
    tA?.dispose(); tBB?.dispose();
  }
  for (const { W, B } of gpuW.values()) { W.dispose(); B.dispose(); }
  tW.dispose(); tB.dispose();
}
process.exit(0);
