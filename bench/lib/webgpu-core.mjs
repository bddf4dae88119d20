// The WebGPU bench body, shared by webgpu.mjs (Node, `webgpu` package) and webgpu.html (a browser).
// Browser-safe: no node:* imports. Times `linear` and `lora_linear` (r = 16) on the WebGPU backend and on the
// wasm backend, each call from a fresh x in JS memory to y read back into JS (`await y.read()`), and counts
// compute dispatches per forward from `backend.stats.dispatches`.
import { randomF32 } from './random.mjs';

const LORA_SCALE = 2;


async function time(fn, budgetMs, minReps) {
  await fn();
  await fn();
  const ts = [];
  const start = performance.now();
  while (ts.length < minReps || (performance.now() - start < budgetMs && ts.length < 1000)) {
    const t0 = performance.now();
    await fn();
    ts.push(performance.now() - t0);
  }
  ts.sort((a, b) => a - b);
  return ts[ts.length >> 1];
}

/** Shapes: the CPU bench's on a hardware adapter; small ones on a software adapter, where timing says little. */
export function shapesFor(software) {
  return software ? { sizes: [1024], ms: [1, 64], ranks: [0, 16] } : { sizes: [2048, 4096], ms: [1, 8, 64, 256], ranks: [0, 16] };
}

export async function runWebGPU({ lib, gpu, log = console.log, quick = false }) {
  const { Tensor } = lib;
  const gpuBe = await lib.createBackend('webgpu', gpu ? { gpu } : undefined);
  const wasmBe = await lib.createBackend('wasm', { threads: 1 }); // one thread, as the table says
  const software = gpuBe.software ?? gpuBe.ctx?.software ?? false;
  const adapter = gpuBe.ctx?.description ?? String(gpuBe);
  const shapes = shapesFor(software);
  if (quick) shapes.sizes = shapes.sizes.slice(0, 1);
  log(`WebGPU adapter: ${adapter}${software ? ' (software)' : ''}`);
  const rows = [];
  for (const size of shapes.sizes) {
    const k = size;
    const n = size;
    const w = randomF32(n * k, 1, 1 / Math.sqrt(k));
    const bias = randomF32(n, 2, 0.1);
    for (const r of shapes.ranks) {
      const a = r && randomF32(k * r, 3, 1 / Math.sqrt(k));
      const b = r && randomF32(r * n, 4, 1 / Math.sqrt(r));
      const flopsPerRow = 2 * k * n + (r ? 2 * r * (k + n) : 0);
      const perBe = [];
      for (const be of [gpuBe, wasmBe]) {
        const W = be.upload(Tensor.from(w, [n, k], 'f32'));
        const B0 = be.upload(Tensor.from(bias, [n], 'f32'));
        const deltas = r
          ? [{ a: be.upload(Tensor.from(a, [k, r], 'f32')), b: be.upload(Tensor.from(b, [r, n], 'f32')), scale: LORA_SCALE }]
          : [];
        perBe.push({ be, W, B0, deltas });
      }
      for (const m of shapes.ms) {
        const x = randomF32(m * k, 100 + m, 1);
        const res = {};
        let ref;
        for (const { be, W, B0, deltas } of perBe) {
          const fwd = async (keep) => {
            const xt = Tensor.from(x, [m, k], 'f32');
            const y = be.linear(xt, W, B0, deltas);
            const out = await y.read();
            y.dispose();
            return keep ? out : undefined;
          };
          const before = be.stats ? { ...be.stats } : undefined;
          const y = await fwd(true);
          const dispatches = before ? be.stats.dispatches - before.dispatches : undefined;
          const submits = before ? be.stats.submits - before.submits : undefined;
          let err;
          if (ref) {
            let e = 0;
            let mx = 0;
            for (let i = 0; i < y.length; i++) {
              e = Math.max(e, Math.abs(y[i] - ref[i]));
              mx = Math.max(mx, Math.abs(ref[i]));
            }
            err = e / mx;
          } else ref = y;
          const big = flopsPerRow * m > 2e9;
          const t = await time(() => fwd(false), quick ? 150 : big ? 0 : 400, big ? 3 : 5);
          res[be.name] = { ms: t, gflops: (flopsPerRow * m) / t / 1e6, dispatches, submits, err };
          if (be === gpuBe) {
            // Which kernels ran (never a silent choice), and GPU time from timestamp queries: CHAIN forwards on a
            // device-resident x, one read; GFLOP/s and effective GB/s (W + x + y + A + B bytes) from GPU time.
            const plan = be.kernelFor?.('linear', m, k, n, { ranks: r ? [r] : [] });
            const xd = be.upload(Tensor.from(x, [m, k], 'f32'));
            const CHAIN = 8;
            const gt = be.gpuTime
              ? await be.gpuTime(async () => {
                  let y;
                  for (let i = 0; i < CHAIN; i++) {
                    y?.dispose();
                    y = be.linear(xd, W, B0, deltas);
                  }
                  await y.read();
                  y.dispose();
                })
              : { ms: undefined };
            xd.dispose();
            const bytes = 4 * (n * k + m * k + m * n + n + (r ? r * (k + n) : 0));
            const gpuMs = gt.ms === undefined ? undefined : gt.ms / CHAIN;
            Object.assign(res[be.name], {
              kernels: plan?.kernels.join(' + '),
              tile: plan?.tile,
              gpuMs,
              gpuGflops: gpuMs ? (flopsPerRow * m) / gpuMs / 1e6 : undefined,
              gpuGBs: gpuMs ? bytes / gpuMs / 1e6 : undefined,
            });
          }
        }
        const g = res.webgpu;
        const c = res.wasm;
        const gpuT = g.gpuMs === undefined ? 'no timestamp-query' : `GPU ${(g.gpuMs * 1000).toFixed(1)} µs, ${g.gpuGflops.toFixed(1)} GFLOP/s, ${g.gpuGBs.toFixed(1)} GB/s`;
        log(`k=n=${size} ${r ? `lora r=${r}` : 'linear'} m=${m}: webgpu ${g.ms.toFixed(2)} ms ${g.gflops.toFixed(2)} GFLOP/s (${g.dispatches} dispatches, ${g.submits} submits; ${g.kernels}; ${gpuT}), wasm ${c.ms.toFixed(2)} ms ${c.gflops.toFixed(2)} GFLOP/s, max rel diff webgpu vs wasm ${c.err.toExponential(1)}`);
        rows.push({ size, r, m, webgpu: g, wasm: c });
      }
      for (const { W, B0, deltas } of perBe) for (const t of [W, B0, ...deltas.flatMap((d) => [d.a, d.b])]) t.dispose();
    }
  }
  const routes = await runRoutesGpu({ lib, gpuBe, wasmBe, software, quick, log });
  gpuBe.dispose?.();
  return { adapter, software, rows, routes, version: lib.VERSION ?? lib.version ?? '0.1.0' };
}

/**
 * Per-row adapters on WebGPU (issue 9's target: 16 rows routed to 16 different r = 16 adapters ≤ 1.15× the same
 * batch with one adapter): one LoRA layer with 16 adapters, a batch of 16 rows, routed three ways; wall time per
 * forward (x uploaded, y read back), GPU time from timestamps where the adapter has them, dispatches, and every row
 * against the wasm backend's routed rows.
 */
async function runRoutesGpu({ lib, gpuBe, wasmBe, software, quick, log }) {
  const { Tensor, Linear, LoRALinear } = lib;
  if (!Linear || !LoRALinear) return undefined;
  const size = software ? 1024 : 4096;
  const [k, n, r, m] = [size, size, 16, 16];
  const w = randomF32(n * k, 11, 1 / Math.sqrt(k));
  const bias = randomF32(n, 12, 0.1);
  const adapters = Array.from({ length: 16 }, (_, i) => ({ a: randomF32(k * r, 20 + i, 1 / Math.sqrt(k)), b: randomF32(r * n, 40 + i, 1 / Math.sqrt(r)) }));
  const layers = [gpuBe, wasmBe].map((backend) => {
    const l = LoRALinear.fromBase(new Linear(Tensor.from(w, [n, k], 'f32'), Tensor.from(bias, [n], 'f32'), { backend }));
    adapters.forEach((ad, i) => l.addAdapter({ name: `a${i}`, a: Tensor.from(ad.a, [k, r], 'f32'), b: Tensor.from(ad.b, [r, n], 'f32'), scale: LORA_SCALE }));
    return l;
  });
  const x = randomF32(m * k, 13, 1);
  const cases = {
    'one adapter, 16 rows': Array(m).fill('a0'),
    '16 adapters, 16 rows': Array.from({ length: m }, (_, i) => `a${i}`),
    '8 base + 8 adapter rows': Array.from({ length: m }, (_, i) => (i % 2 ? `a${i}` : null)),
  };
  const out = [];
  for (const [name, route] of Object.entries(cases)) {
    const fwd = async (layer, keep) => {
      const y = layer.forward(Tensor.from(x, [m, k], 'f32'), { adapters: route });
      const v = await y.read();
      y.dispose();
      return keep ? v : undefined;
    };
    await fwd(layers[0], false); // the first forward of a route stacks its adapter banks (cached): count the next one
    const before = gpuBe.stats.dispatches;
    const got = await fwd(layers[0], true);
    const dispatches = gpuBe.stats.dispatches - before;
    const ref = await fwd(layers[1], true);
    let e = 0;
    let mx = 0;
    for (let i = 0; i < ref.length; i++) {
      e = Math.max(e, Math.abs(got[i] - ref[i]));
      mx = Math.max(mx, Math.abs(ref[i]));
    }
    const ms = await time(() => fwd(layers[0], false), quick ? 150 : 600, 5);
    let gpuMs;
    if (gpuBe.gpuTime) {
      const xd = gpuBe.upload(Tensor.from(x, [m, k], 'f32'));
      const gt = await gpuBe.gpuTime(async () => {
        const y = layers[0].forward(xd, { adapters: route });
        await y.read();
        y.dispose();
      });
      xd.dispose();
      gpuMs = gt.ms;
    }
    out.push({ name, ms, gpuMs, dispatches, err: e / mx });
    log(`routes webgpu ${name}: ${ms.toFixed(2)} ms${gpuMs === undefined ? '' : `, GPU ${(gpuMs * 1000).toFixed(1)} µs`}, ${dispatches} dispatches, max rel diff vs wasm ${(e / mx).toExponential(1)}`);
  }
  for (const l of layers) l.dispose?.();
  return { k, n, r, m, rows: out };
}

export function webgpuTable({ adapter, software, rows, routes, version }) {
  const line = (c) => `| ${c.join(' | ')} |`;
  const head = ['op', 'k = n', 'm', `**peftjs ${version} webgpu** GFLOP/s`, 'peftjs wasm GFLOP/s', 'webgpu ÷ wasm', 'dispatches / forward', 'submits / forward', 'GPU time / forward (timestamps)', 'GPU GFLOP/s', 'effective GB/s', 'kernels', 'max rel diff vs wasm'];
  const body = rows.map((x) => [
    x.r ? `lora_linear r=${x.r}` : 'linear',
    x.size,
    x.m,
    `**${x.webgpu.gflops.toFixed(2)}**`,
    x.wasm.gflops.toFixed(2),
    `${(x.webgpu.gflops / x.wasm.gflops).toPrecision(2)}×`,
    x.webgpu.dispatches ?? '—',
    x.webgpu.submits ?? '—',
    x.webgpu.gpuMs === undefined ? '—' : `${(x.webgpu.gpuMs * 1000).toFixed(1)} µs`,
    x.webgpu.gpuGflops === undefined ? '—' : x.webgpu.gpuGflops.toFixed(1),
    x.webgpu.gpuGBs === undefined ? '—' : x.webgpu.gpuGBs.toFixed(1),
    x.webgpu.kernels ? `\`${x.webgpu.kernels}\`` : '—',
    x.wasm.err.toExponential(1),
  ]);
  const warn = software
    ? `Adapter: ${adapter}, a **software** adapter (CPU emulation): these timings say nothing about a GPU; the dispatch counts hold everywhere.`
    : `Adapter: ${adapter}.`;
  const rt = routes?.rows;
  const routeLines = rt
    ? [
        '',
        `Per-row adapters (routes) on WebGPU: one LoRA layer, k = n = ${routes.k}, r = ${routes.r}, ${routes.m} rows; × = over one adapter on all rows (target for 16 adapters: ≤ 1.15×).`,
        '',
        line(['batch', 'ms / forward', '×', 'GPU time', '× (GPU time)', 'dispatches', 'max rel diff vs wasm']),
        line(['---', '---:', '---:', '---:', '---:', '---:', '---:']),
        ...rt.map((x) =>
          line([
            x.name,
            x.ms.toFixed(2),
            `${(x.ms / rt[0].ms).toFixed(2)}×`,
            x.gpuMs ? `${(x.gpuMs * 1000).toFixed(1)} µs` : '—',
            x.gpuMs && rt[0].gpuMs ? `${(x.gpuMs / rt[0].gpuMs).toFixed(2)}×` : '—',
            x.dispatches,
            x.err.toExponential(1),
          ]),
        ),
      ]
    : [];
  return [
    '#### WebGPU backend (per forward, x uploaded and y read back)',
    '',
    `${warn} GFLOP/s, higher is better; wasm is one thread.`,
    '',
    line(head),
    line(head.map((_, i) => (i < 1 ? '---' : '---:'))),
    ...body.map(line),
    ...routeLines,
  ].join('\n');
}
