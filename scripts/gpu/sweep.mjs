// On the GPU machine: (1) GEMM tiles S/M/L across shapes and batch sizes, GPU time per forward (timestamps over a
// chain of forwards on device-resident x); (2) a decode step's anatomy on pycoder and Qwen2.5-0.5B-shaped weights:
// wall, CPU recording, GPU time, passes, submits per token; the sync floor (one tiny op + read).
// Usage: node scripts/gpu/sweep.mjs ROOT [tiles|decode]
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { join, resolve } from 'node:path';

const ROOT = resolve(process.argv[2] ?? '.');
const only = process.argv[3];
const req = createRequire(join(ROOT, 'package.json'));
const { create, globals } = await import(pathToFileURL(req.resolve('webgpu')).href);
Object.assign(globalThis, globals);
const gpu = create([]);
const lib = await import(pathToFileURL(join(ROOT, 'dist/index.js')).href);
const { Tensor } = lib;
const { randomF32 } = await import(pathToFileURL(join(ROOT, 'bench/lib/random.mjs')).href);
const { median } = await import(pathToFileURL(join(ROOT, 'bench/lib/common.mjs')).href);
const log = (o) => console.log(JSON.stringify(o));
const SMOKE = !!process.env.SMOKE; // a software adapter: tiny shapes, to check the script runs

if (!only || only === 'tiles') {
  const bes = {};
  for (const t of ['S', 'M', 'L']) bes[t] = await lib.createBackend('webgpu', { gpu, gemmTile: t });
  bes.auto = await lib.createBackend('webgpu', { gpu });
  const shapes = SMOKE ? [[64, 64]] : [[4096, 4096], [2048, 2048], [8192, 8192], [896, 4864], [4864, 896], [896, 896], [896, 151936]];
  const ms = SMOKE ? [16, 32] : [16, 32, 64, 128, 256, 512, 1024, 2048];
  for (const [k, n] of shapes) {
    const w = randomF32(n * k, 1, 1 / Math.sqrt(k));
    const Ws = Object.fromEntries(Object.entries(bes).map(([t, be]) => [t, be.upload(Tensor.from(w, [n, k], 'f32'))]));
    for (const m of ms) {
      if (k * n > 1e8 && m > 512) continue;
      const x = randomF32(m * k, 100 + m, 1);
      const flops = 2 * m * n * k;
      const N = Math.max(3, Math.min(200, Math.round(3e11 / flops)));
      const row = { k, n, m, N };
      let ref;
      for (const [t, be] of Object.entries(bes)) {
        const W = Ws[t];
        const xg = be.upload(Tensor.from(x, [m, k], 'f32'));
        const y0 = be.linear(xg, W, undefined, []);
        const yy = await y0.read();
        y0.dispose();
        if (!ref) ref = yy;
        else {
          let e = 0;
          for (let i = 0; i < yy.length; i += 7) e = Math.max(e, Math.abs(yy[i] - ref[i]));
          row[`${t}diff`] = e;
        }
        const gts = [];
        const walls = [];
        for (let rep = 0; rep < 3; rep++) {
          const t0 = performance.now();
          const g = await be.gpuTime(async () => {
            let last;
            for (let i = 0; i < N; i++) {
              last?.dispose();
              last = be.linear(xg, W, undefined, []);
            }
            await last.read();
            last.dispose();
          }, { maxPasses: 2048 });
          walls.push((performance.now() - t0) / N);
          gts.push(g.ms / N);
        }
        row[t] = +(flops / median(gts) / 1e6).toFixed(0);
        row[`${t}wall`] = +(flops / median(walls) / 1e6).toFixed(0);
        if (t === 'auto') row.autoKernel = be.kernelFor?.('linear', m, k, n)?.kernels?.join('+');
        xg.dispose();
      }
      log(row);
    }
    for (const W of Object.values(Ws)) W.dispose();
  }
  for (const be of Object.values(bes)) be.dispose?.();
}

if (!only || only === 'decode') {
  const be = await lib.createBackend('webgpu', { gpu });
  // The sync floor: one tiny op and a read.
  {
    const W = be.upload(Tensor.from(randomF32(64 * 64, 1, 0.1), [64, 64], 'f32'));
    const x = Tensor.from(randomF32(64, 2, 1), [1, 64], 'f32');
    const ts = [];
    for (let i = 0; i < 200; i++) {
      const t0 = performance.now();
      const y = be.linear(x, W, undefined, []);
      await y.read();
      y.dispose();
      ts.push(performance.now() - t0);
    }
    log({ floor: 'one 64x64 GEMV + read', ms: median(ts.slice(20)) });
    W.dispose();
  }
  const { syntheticCheckpoint } = await import(pathToFileURL(join(ROOT, 'bench/lib/synthetic-lm.mjs')).href);
  const models = {
    pycoder: () => lib.CausalLM.load(join(ROOT, 'models/pycoder/base/'), { backend: be, weightDtype: 'bf16' }),
    qwen05b: () => lib.CausalLM.load(syntheticCheckpoint(lib.writeSafetensors).files, { backend: be, weightDtype: 'bf16', maxLength: 512 }),
  };
  for (const [name, load] of Object.entries(models)) {
    if (SMOKE && name !== 'pycoder') continue;
    const t0 = performance.now();
    const lm = await load();
    const loadMs = performance.now() - t0;
    const V = lm.config.vocab;
    const prompt = Array.from({ length: 16 }, (_, i) => (i * 7919 + 13) % V);
    const cache = lm.createCache();
    let pos = 0;
    const step = async (ids) => {
      const y = lm.forward(ids, pos, { cache, lastOnly: true });
      const rec = performance.now();
      const l = await y.read();
      y.dispose();
      pos += ids.length;
      let best = 0;
      for (let i = 1; i < l.length; i++) if (l[i] > l[best]) best = i;
      return { tok: best, rec };
    };
    let { tok } = await step(prompt);
    for (let i = 0; i < 8; i++) tok = (await step([tok])).tok; // warm
    const walls = [];
    const recs = [];
    const s0 = { ...be.stats };
    const nSteps = SMOKE ? 2 : 40;
    for (let i = 0; i < nSteps; i++) {
      const t = performance.now();
      const r = await step([tok]);
      tok = r.tok;
      walls.push(performance.now() - t);
      recs.push(r.rec - t);
    }
    const perStep = Object.fromEntries(['dispatches', 'submits', 'readbacks', 'bindGroups', 'uploads'].map((k) => [`${k}PerStep`, (be.stats[k] - s0[k]) / nSteps]));
    const g = await be.gpuTime(async () => {
      for (let i = 0; i < 4; i++) tok = (await step([tok])).tok;
    }, { maxPasses: 2048 });
    // Prefill GPU time at S = 64.
    const c2 = lm.createCache();
    const ids64 = Array.from({ length: 64 }, (_, i) => (i * 31 + 7) % V);
    const pw = [];
    for (let r = 0; r < 5; r++) {
      const t = performance.now();
      const y = lm.forward(ids64, 0, { cache: c2, lastOnly: true });
      await y.read();
      y.dispose();
      pw.push(performance.now() - t);
    }
    const gp = await be.gpuTime(async () => {
      const y = lm.forward(ids64, 0, { cache: c2, lastOnly: true });
      await y.read();
      y.dispose();
    }, { maxPasses: 2048 });
    log({ model: name, loadMs: Math.round(loadMs), layers: lm.config.layers, decodeWallMs: median(walls), decodeTokPerS: 1000 / median(walls), recordMs: median(recs), gpuMsPerStep: g.ms / 4, passesPerStep: g.passes / 4, untimed: g.untimed, ...perStep, prefill64WallMs: median(pw), prefill64GpuMs: gp.ms, prefill64Passes: gp.passes });
    lm.dispose();
  }
}
if (only === 'readback') {
  // What a read costs (y back into JS), and how much of a large-m chain's wall time it is.
  const be = await lib.createBackend('webgpu', { gpu });
  for (const floats of [1024, 151936, 1 << 20, 1 << 22, 1 << 23]) {
    const t = be.upload(Tensor.from(randomF32(floats, 5, 1), [floats], 'f32'));
    const y = be.sliceRows(t, 0, 1); // an op output: its read goes through the GPU (an upload keeps its host bytes)
    await y.read();
    const ts = [];
    for (let i = 0; i < (SMOKE ? 2 : 15); i++) {
      const t0 = performance.now();
      await y.read();
      ts.push(performance.now() - t0);
    }
    log({ readback: floats * 4, ms: median(ts), gbps: (floats * 4) / median(ts) / 1e6 });
    y.dispose();
    t.dispose();
  }
  const [k, n, m] = SMOKE ? [64, 64, 32] : [4096, 4096, 1024];
  const W = be.upload(Tensor.from(randomF32(n * k, 1, 1 / Math.sqrt(k)), [n, k], 'f32'));
  const xg = be.upload(Tensor.from(randomF32(m * k, 2, 1), [m, k], 'f32'));
  const N = 5;
  const chain = async (readAll) => {
    let last;
    for (let i = 0; i < N; i++) {
      last?.dispose();
      last = be.linear(xg, W, undefined, []);
    }
    if (readAll) await last.read();
    else {
      const one = be.sliceRows(last, 0, 1);
      await one.read();
      one.dispose();
    }
    last.dispose();
  };
  const res = {};
  for (const [name, fn] of [['full read', () => chain(true)], ['one-row read', () => chain(false)]]) {
    await fn();
    const ts = [];
    for (let i = 0; i < 7; i++) {
      const t0 = performance.now();
      await fn();
      ts.push(performance.now() - t0);
    }
    res[name] = Math.min(...ts) / N;
  }
  const g = await be.gpuTime(() => chain(false), { maxPasses: 64 });
  log({ chain: `k=n=${k} m=${m}, ${N} forwards`, msPerForward: res, gpuMsPerForward: g.ms / N, passes: g.passes });
}
process.exit(0);
