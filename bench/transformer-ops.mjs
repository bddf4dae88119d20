// Question: how long do the transformer ops of a decoder layer take on the wasm backend (cpp/transformer.h,
// cpp/attention.h: SIMD128 and the scalar twins), next to the float64 JS loops they replace (CpuOps, which is what
// the js backend runs, and what the wasm backend ran over wasm memory before), and next to the layer's matmuls?
// Shapes: pycoder (d 256, head_dim 32, 8 heads / 4 KV heads, ffn 704, 1024 positions), one decode step at
// position 512 (m = 1) and a verify batch of 8 rows there (m = 8). One thread; every op's output is allocated
// and disposed per call, as a forward does.
// Usage: node transformer-ops.mjs [--quick]   (prints markdown)
import { args, fmt, machine, randomF32, table, timeRounds } from './lib/common.mjs';
import { loadLib } from './lib/ours.mjs';

const S = { d: 256, hd: 32, heads: 8, kvHeads: 4, ffn: 704, maxLen: 1024, pos: 512 };

/** Tensors of one layer at m rows, resident on `be`, and the ops of that layer as closures. */
function setup(lib, be, m) {
  const { Tensor } = lib;
  const { d, hd, heads, kvHeads, ffn, maxLen, pos } = S;
  const up = (a, shape) => be.upload(Tensor.from(a, shape, 'f32'));
  const half = hd / 2;
  const cos = new Float32Array(maxLen * half);
  const sin = new Float32Array(maxLen * half);
  for (let p = 0; p < maxLen; p++)
    for (let j = 0; j < half; j++) {
      const a = p * 10000 ** (-(2 * j) / hd);
      cos[p * half + j] = Math.cos(a);
      sin[p * half + j] = Math.sin(a);
    }
  const t = {
    x: up(randomF32(m * d, 1), [m, d]),
    res: up(randomF32(m * d, 2), [m, d]),
    w: up(randomF32(d, 3), [d]),
    b: up(randomF32(d, 4), [d]),
    q: up(randomF32(m * heads * hd, 5), [m, heads * hd]),
    k: up(randomF32(m * kvHeads * hd, 6), [m, kvHeads * hd]),
    cos: up(cos, [maxLen, half]),
    sin: up(sin, [maxLen, half]),
    kc: up(randomF32(kvHeads * maxLen * hd, 7), [kvHeads, maxLen, hd]),
    vc: up(randomF32(kvHeads * maxLen * hd, 8), [kvHeads, maxLen, hd]),
    g: up(randomF32(m * ffn, 9, 4), [m, ffn]),
    u: up(randomF32(m * ffn, 10), [m, ffn]),
  };
  const shape = { heads, kvHeads, headDim: hd };
  const ops = [
    ['rmsNorm', `[${m},${d}]`, () => be.rmsNorm(t.x, t.w, 1e-6).dispose()],
    ['layerNorm', `[${m},${d}]`, () => be.layerNorm(t.x, t.w, t.b, 1e-5).dispose()],
    ['rope q', `[${m},${heads}·${hd}]`, () => be.rope(t.q, t.cos, t.sin, heads, hd, pos)],
    ['rope k', `[${m},${kvHeads}·${hd}]`, () => be.rope(t.k, t.cos, t.sin, kvHeads, hd, pos)],
    ['kvWrite', `[${m},${kvHeads}·${hd}]`, () => be.kvWrite(t.kc, t.k, pos, kvHeads, hd)],
    ['attention', `${heads}/${kvHeads}×${hd}, keys ≤ ${pos + m}`, () => be.attention(t.q, t.kc, t.vc, pos, shape, 1 / Math.sqrt(hd)).dispose()],
    ['addInPlace', `[${m},${d}]`, () => be.addInPlace(t.res, t.x)],
    ['swiglu', `[${m},${ffn}]`, () => be.swiglu(t.g, t.u).dispose()],
    ['geluTanh', `[${m},${ffn}]`, () => be.geluTanh(t.g).dispose()],
  ];
  const dispose = () => Object.values(t).forEach((x) => x.dispose());
  return { ops, dispose };
}

/** A llama-style layer's ops per decode step (layerNorm and geluTanh are GPT-2's, timed but not counted). */
const LAYER = { rmsNorm: 2, 'rope q': 1, 'rope k': 1, kvWrite: 2, attention: 1, addInPlace: 2, swiglu: 1 };

/** The seven projections of a layer at m rows (wasm SIMD, f32 W): q, k, v, o, gate, up, down. */
function setupLinears(lib, be, m) {
  const { Tensor } = lib;
  const { d, hd, heads, kvHeads, ffn } = S;
  const shapes = [[heads * hd, d], [kvHeads * hd, d], [kvHeads * hd, d], [d, heads * hd], [ffn, d], [ffn, d], [d, ffn]];
  const ws = shapes.map(([n, k], i) => be.upload(Tensor.from(randomF32(n * k, 20 + i, 1 / Math.sqrt(k)), [n, k], 'f32'), { linearWeight: true }));
  const xs = [d, ffn].map((k, i) => be.upload(Tensor.from(randomF32(m * k, 40 + i), [m, k], 'f32')));
  const run = () => ws.forEach((w, i) => be.linear(i === 6 ? xs[1] : xs[0], w, undefined, []).dispose());
  return { run, dispose: () => [...ws, ...xs].forEach((x) => x.dispose()) };
}

export async function runTransformerOps({ quick = false, log = console.error } = {}) {
  const { lib, error } = await loadLib();
  if (!lib) throw new Error(error);
  await lib.init();
  const peers = {
    js: new lib.JsBackend(),
    scalar: await lib.WasmBackend.create({ kernels: 'scalar' }),
    simd: await lib.WasmBackend.create({ kernels: 'simd128' }),
  };
  const res = {};
  const rounds = { rounds: quick ? 2 : 7, roundMs: quick ? 30 : 100 };
  for (const m of quick ? [1] : [1, 8]) {
    const sets = Object.fromEntries(Object.entries(peers).map(([id, be]) => [id, setup(lib, be, m)]));
    res[m] = { ops: {}, linear: 0 };
    for (let o = 0; o < sets.js.ops.length; o++) {
      const [name, shape] = sets.js.ops[o];
      // Repeat sub-µs ops inside one timed call (~0.2 ms each), so the timer's resolution does not dominate.
      const reps = {};
      for (const id of Object.keys(peers)) {
        const op = sets[id].ops[o][2];
        for (let r = 0; r < 20; r++) op();
        const t0 = performance.now();
        for (let r = 0; r < 20; r++) op();
        reps[id] = Math.max(1, Math.round(0.2 / ((performance.now() - t0) / 20)));
      }
      const fns = Object.fromEntries(Object.keys(peers).map((id) => [id, () => { for (let r = 0; r < reps[id]; r++) sets[id].ops[o][2](); }]));
      const t = await timeRounds(fns, rounds);
      const us = Object.fromEntries(Object.keys(peers).map((id) => [id, (1000 * t[id]) / reps[id]]));
      res[m].ops[name] = { shape, us };
      log(`m=${m} ${name} ${shape}: js ${us.js.toFixed(2)} µs, wasm scalar ${us.scalar.toFixed(2)} µs, wasm simd ${us.simd.toFixed(2)} µs`);
    }
    const lin = setupLinears(lib, peers.simd, m);
    const tl = await timeRounds({ lin: () => { for (let r = 0; r < 4; r++) lin.run(); } }, rounds);
    res[m].linear = (1000 * tl.lin) / 4;
    log(`m=${m} 7 linears: ${res[m].linear.toFixed(1)} µs`);
    lin.dispose();
    Object.values(sets).forEach((s) => s.dispose());
  }
  return res;
}

const us = (x) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

export function transformerOpsTables(res) {
  const out = [`### Transformer ops, pycoder shapes (d ${S.d}, head_dim ${S.hd}, ${S.heads}/${S.kvHeads} heads, ffn ${S.ffn}), position ${S.pos}, µs per call`, ''];
  for (const [m, r] of Object.entries(res)) {
    out.push(`m = ${m}`, '');
    const rows = Object.entries(r.ops).map(([name, { shape, us: u }]) => [name, shape, us(u.js), us(u.scalar), us(u.simd), fmt.ratio(u.js / u.simd)]);
    const layer = (id) => Object.entries(LAYER).reduce((a, [n, c]) => a + c * r.ops[n].us[id], 0);
    rows.push(['**one llama layer**', '2 norms, 2 ropes, 2 kvWrites, attention, 2 adds, swiglu', us(layer('js')), us(layer('scalar')), us(layer('simd')), fmt.ratio(layer('js') / layer('simd'))]);
    rows.push(['its 7 linears (wasm SIMD)', 'q, k, v, o, gate, up, down', '', '', us(r.linear), '']);
    out.push(table(['op', 'shape', 'JS loops (CpuOps)', 'wasm scalar', 'wasm SIMD128', 'SIMD vs JS'], rows), '');
  }
  return out.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const a = args();
  console.error(`# ${machine()}`);
  console.log(transformerOpsTables(await runTransformerOps({ quick: a.quick })));
}
