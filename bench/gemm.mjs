// Question: how fast are `linear` and `lora_linear` on one CPU thread (and peftjs with threads), next to tfjs-backend-wasm (XNNPACK),
// onnxruntime-web (MLAS) and plain JS?  y = x·Wᵀ + b + s·(x·A)·B,  x [m,k], W [n,k], A [k,r], B [r,n].
// Every library gets a fresh x [m,k] Float32Array per call and hands back y [m,n] readable from JS.
// Usage: node gemm.mjs [--quick] [--sizes 4096] [--ms 8,64] [--ranks 0,16]   (prints markdown; run.mjs also writes it
// to results.md; the lists pick a subset for a focused run)
import { args, fmt, machine, pairedRatio, randomF32, table, timeInterleaved, timeInterleavedSamples } from './lib/common.mjs';
import { ortPeer, plainJsPeer, tfjsPeer, threadedPeer } from './lib/peers.mjs';
import { loadLib, oursPeer, settleTuning } from './lib/ours.mjs';
import { peakProbe } from './lib/peak.mjs';

const LORA_SCALE = 2; // lora_alpha / r for the common alpha = 2r
/** Plain JS (and peftjs's js backend) only where one call stays under ~0.3 s: 2·m·k·n ≤ this. */
const SLOW_PEER_MAX_FLOP = 6e8;

export async function runGemm({ quick = false, log = console.error, pick = {} } = {}) {
  const sizes = pick.sizes ?? (quick ? [2048] : [2048, 4096]);
  const ms = pick.ms ?? (quick ? [1, 64] : [1, 8, 64, 256]);
  const ranks = pick.ranks ?? (quick ? [0, 16] : [0, 8, 16, 64]); // 0 = plain linear

  const peers = [];
  const notes = [];
  const { lib, error } = await loadLib();
  if (lib) {
    // peftjs's js backend is the float64 reference the tests check against, not a contender: not timed.
    peers.push(await oursPeer(lib, 'wasm'));
    // The same with W kept as bf16 (half the bytes). W below is bf16-representable, so every library computes on
    // exactly the same weights; the peers have no bf16 matmul on wasm and hold them as f32.
    peers.push(await oursPeer(lib, 'wasm', { bf16W: true }));
    // With threads (--threads T, default: every core), beside the one-thread peers: not a like-for-like row.
    const ti = process.argv.indexOf('--threads');
    const threads = ti >= 0 ? Number(process.argv[ti + 1]) : (await import('node:os')).availableParallelism();
    if (threads > 1) {
      const t = await oursPeer(lib, 'wasm', { threads });
      if (t.backend.threads > 1) {
        peers.push(t);
        // The peers with the same thread count, each in a worker of its own (a thread count is per wasm instance).
        for (const name of ['ort', 'tfjs']) {
          try {
            peers.push(await threadedPeer(name, threads));
          } catch (e) {
            notes.push(`${name} with ${threads} threads not measured: ${String(e.message ?? e).split('\n')[0]}`);
          }
        }
      } else notes.push(`peftjs with ${threads} threads not measured: ${t.backend.threadsNote}`);
    }
  } else notes.push(`peftjs not measured: ${error}`);
  peers.push(await tfjsPeer(), await ortPeer(), await plainJsPeer());
  for (const p of peers) log(`# ${p.label}: ${p.detail}`);

  // The SIMD128 multiply-add peak of this core, before and after the rounds (the best of both): how far from the
  // ceiling each library runs, and so how far ahead of a peer any SIMD128 kernel could be.
  const probe = await peakProbe();
  const peak = { gflops: probe.measure(), method: probe.method };

  // res[size][r][m][peerId] = { ms, gflops, err }
  const res = {};
  const refBase = {}; // float64 x·Wᵀ per (size, m), shared by every rank
  for (const size of sizes) {
    const k = size;
    const n = size;
    const w = bf16Representable(randomF32(n * k, 1, 1 / Math.sqrt(k)));
    const bias = randomF32(n, 2, 0.1);
    res[size] = {};
    for (const r of ranks) {
      const lora = r ? { r, a: randomF32(k * r, 3 + r, 1 / Math.sqrt(k)), b: randomF32(r * n, 4 + r, 1 / Math.sqrt(r)), scale: LORA_SCALE } : undefined;
      const flopsPerRow = 2 * k * n + (r ? 2 * k * r + 2 * r * n : 0);
      res[size][r] = {};
      const preps = {};
      for (const p of peers) preps[p.id] = await p.prepare({ k, n, w, bias, lora });
      for (const m of ms) {
        const x = randomF32(m * k, 100 + m, 1);
        const here = peers.filter((p) => p.id !== 'js' || 2 * m * k * n <= SLOW_PEER_MAX_FLOP);
        // Check every output row of every library against one float64 reference before timing it.
        const ref = reference(x, m, { k, n, w, bias, lora }, (refBase[`${size}/${m}`] ??= baseProduct(x, m, k, n, w)));
        const errs = {};
        for (const p of here) errs[p.id] = maxRelErr(await preps[p.id].run(x, m, true), ref);
        const big = flopsPerRow * m > 2e9;
        // Every library hands back all of y as a JS-readable Float32Array it owns (copy = true): no one is timed
        // without the read-out a caller pays.
        const fns = Object.fromEntries(here.map((p) => [p.id, () => preps[p.id].run(x, m, true)]));
        // peftjs's tuners (the m = 1 tile, the m = 3 … 16 panel sweep) settle on a shape's first calls: let them
        // before timing, as any run of more than a few dozen calls does.
        for (const p of here) if (p.backend) await settleTuning(p.backend, fns[p.id]);
        // Call by call, the libraries in turn: each call finds W out of cache, as a layer in a real model does,
        // and a burst of other work on the machine hits every library alike.
        const t = await timeInterleaved(fns, big ? { warmup: 1, warmupMs: 0, minIters: 3, budgetMs: 0 } : { budgetMs: quick ? 300 : 2500, minIters: 7 });
        for (const p of here) {
          const gflops = (flopsPerRow * m) / t[p.id] / 1e6;
          ((res[size][r][m] ??= {})[p.id] = { ms: t[p.id], gflops, err: errs[p.id] });
          log(`k=n=${size} ${r ? `lora r=${r}` : 'linear'} m=${m} ${p.id}: ${fmt.ms(t[p.id])} ms, ${fmt.gflops(gflops)} GFLOP/s, max rel err ${errs[p.id].toExponential(1)}`);
          if (errs[p.id] > 1e-3) notes.push(`${p.label} k=n=${size} r=${r} m=${m}: max rel err ${errs[p.id].toExponential(1)} vs float64 reference`);
        }
      }
      for (const p of peers) await preps[p.id].dispose();
    }
  }

  // LoRA overhead and the disabled adapter, timed as interleaved pairs (few-percent effects).
  const cost = {};
  const size = sizes.at(-1);
  {
    const k = size;
    const n = size;
    const r = 16;
    const w = randomF32(n * k, 1, 1 / Math.sqrt(k));
    const bias = randomF32(n, 2, 0.1);
    const lora = { r, a: randomF32(k * r, 3 + r, 1 / Math.sqrt(k)), b: randomF32(r * n, 4 + r, 1 / Math.sqrt(r)), scale: LORA_SCALE };
    for (const p of peers.filter((p) => p.id !== 'js' && p.id !== 'ours-bf16' && !isThreaded(p))) {
      const base = await p.prepare({ k, n, w, bias });
      const withLora = await p.prepare({ k, n, w, bias, lora });
      // peftjs: its layers, sharing one resident W, so only the adapter differs (two uploads of W can differ by
      // 10 % at m=1 just by where they sit in memory). Without the layer API: one upload, with and without deltas.
      const layers = p.id === 'ours' ? p.layers({ k, n, w, bias, lora }) : undefined;
      if (layers) log(`cost ours via layers: ${layers.describe}`);
      for (const m of [1, 64]) {
        const x = randomF32(m * k, 100 + m, 1);
        const fns = layers
          ? { base: () => layers.base(x, m), lora: () => layers.on(x, m), off: () => layers.off(x, m) }
          : p.id === 'ours'
            ? { base: () => withLora.run(x, m, true, []), lora: () => withLora.run(x, m, true) }
            : { base: () => base.run(x, m, true), lora: () => withLora.run(x, m, true) };
        const { medians: t, samples } = await timeInterleavedSamples(fns, { budgetMs: quick ? 1000 : 4000 });
        const c = ((cost[p.id] ??= {})[m] = { lora: (pairedRatio(samples, 'lora', 'base') - 1) * 100 });
        if (t.off !== undefined) c.off = (pairedRatio(samples, 'off', 'base') - 1) * 100;
        log(`cost ${p.id} m=${m}: base ${fmt.ms(t.base)} ms, lora r=16 ${fmt.pct(c.lora)}${c.off === undefined ? '' : `, off ${fmt.pct(c.off)}`}`);
      }
      if (p.id === 'ours' && !layers) notes.push('peftjs does not export Linear/LoRALinear yet: "off" (loraEnabled = false) not measured');
      await base.dispose();
      await withLora.dispose();
    }
    cost.ideal = (2 * k * r + 2 * r * n) / (2 * k * n) * 100;
  }
  // Which f32 sweep of a W in panels the backend's tuner settled on (m = 3 … 16: the m = 8 rows ran it).
  for (const p of peers.filter((q) => q.backend?.panelSweepTuning && !q.id.includes('bf16'))) {
    const reps = p.backend.panelSweepTuning();
    if (!reps.length) continue;
    const say = (r) =>
      `${r.m === undefined ? 'one thread' : `m = ${r.m} split across threads`}: ${r.sweep ?? 'still timing'}` +
      (r.relative ? ` (median time ÷ the fastest: ${Object.entries(r.relative).map(([n, v]) => `${n} ${v.toFixed(2)}`).join(', ')})` : '');
    notes.push(`${p.label}: the f32 GEMM's panel sweep at m = 3 … 16 (timed on the first calls, cpp/linear_panel.h): ${reps.map(say).join('; ')}`);
  }
  for (const p of peers) await p.terminate?.();
  peak.gflops = Math.max(peak.gflops, probe.measure());
  log(`SIMD128 multiply-add peak: ${fmt.gflops(peak.gflops)} GFLOP/s`);
  return { peers, res, cost, sizes, ms, ranks, notes, costSize: size, peak };
}

/** A peer run with more than one thread (ours-t2, ort-2t, tfjs-2t). */
const isThreaded = (p) => /-t\d+$|-\d+t$/.test(p.id);

/** Each value rounded to the nearest bf16 (ties to even), kept as f32: a W every peer can hold exactly. */
function bf16Representable(f) {
  const u = new Uint32Array(f.buffer, f.byteOffset, f.length);
  for (let i = 0; i < u.length; i++) u[i] = ((u[i] + 0x7fff + ((u[i] >>> 16) & 1)) >>> 16) << 16;
  return f;
}

/** x·Wᵀ in float64, [m,n]: the part of the reference every rank shares. */
function baseProduct(x, m, k, n, w) {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += x[i * k + p] * w[j * k + p];
      out[i * n + j] = s;
    }
  return out;
}

/** y = x·Wᵀ + bias + s·(x·A)·B in float64, every row. */
function reference(x, m, { k, n, bias, lora }, base) {
  const y = Float64Array.from(base);
  for (let i = 0; i < m; i++) {
    const t = new Float64Array(lora?.r ?? 0);
    if (lora) for (let q = 0; q < lora.r; q++) for (let p = 0; p < k; p++) t[q] += x[i * k + p] * lora.a[p * lora.r + q];
    for (let j = 0; j < n; j++) {
      let s = y[i * n + j] + bias[j];
      if (lora) for (let q = 0; q < lora.r; q++) s += lora.scale * t[q] * lora.b[q * n + j];
      y[i * n + j] = s;
    }
  }
  return y;
}

/** Max |y − ref| / (|ref|max) over every element of y (all m rows); NaN or a short y counts as infinite error. */
function maxRelErr(y, ref) {
  if (!y || y.length !== ref.length) return Infinity;
  let maxErr = 0;
  let maxRef = 0;
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs(ref[i] - y[i]);
    maxErr = Number.isNaN(e) ? Infinity : Math.max(maxErr, e);
    maxRef = Math.max(maxRef, Math.abs(ref[i]));
  }
  return maxErr / maxRef;
}

/** The markdown: one table per question. */
export function gemmTables({ peers: all, res, cost, sizes, ms, ranks, notes, costSize, peak }) {
  const out = [];
  const peers = all.filter((p) => !isThreaded(p));
  const ours = peers.find((p) => p.id === 'ours');
  const label = (p) => (p.id.startsWith('ours') ? `**${p.label}**` : p.label);
  const cell = (size, r, m, p) => {
    const v = res[size]?.[r]?.[m]?.[p.id];
    if (!v) return '—';
    const g = fmt.gflops(v.gflops);
    if (p.id === 'ours') return `**${g}**`;
    if (p.id === 'ours-bf16') {
      const best = Math.max(...['tfjs', 'ort'].map((id) => res[size][r][m]?.[id]?.gflops ?? 0));
      return best ? `**${g}** (${fmt.ratio(v.gflops / best)} best peer)` : `**${g}**`;
    }
    const o = ours && res[size][r][m]?.ours;
    return o ? `${g} (${fmt.ratio(o.gflops / v.gflops)})` : g;
  };
  const legend =
    'GFLOP/s (higher is better), one thread, x from and y back to JS memory on every call; the median call, ' +
    'the libraries called in turn (so W is never cache-warm, as in a real model). ' +
    (ours ? '(N×) = peftjs (f32 W) is N times as fast as that row; on the bf16-W row, N× the faster of tfjs and ort. ' : 'peftjs was not built, so it has no row. ') +
    'W is bf16-representable, so all compute on the same weights; only peftjs can hold them as bf16.';

  // The one-glance table: the largest size, adapter off and r = 16, decode (m=1) and a prompt chunk (m=64).
  {
    const size = sizes.at(-1);
    const cols = [[0, 1], [0, 64], [16, 1], [16, 64]].filter(([r, m]) => ranks.includes(r) && ms.includes(m));
    const rows = peers
      .filter((p) => cols.some(([r, m]) => res[size]?.[r]?.[m]?.[p.id]))
      .map((p) => [label(p), ...cols.map(([r, m]) => cell(size, r, m, p))]);
    out.push(
      `#### Summary: one linear layer, k = n = ${size}, one thread\n\n${legend}\n\n` +
        table(['library', ...cols.map(([r, m]) => `${r ? `LoRA r=${r}` : 'linear'}, m=${m}`)], rows),
    );
  }

  // Each library's share of the peak (plain linear, f32 W, largest size), and the ceiling that leaves: a SIMD128
  // kernel at 100 % of the peak is peak ÷ (best peer) ahead of the best peer, no more.
  if (peak && ranks.includes(0)) {
    const size = sizes.at(-1);
    const pct = (g) => (g === undefined ? '—' : `${((g / peak.gflops) * 100).toFixed(0)} %`);
    const rows = peers
      .filter((p) => p.id !== 'js' && ms.some((m) => res[size]?.[0]?.[m]?.[p.id]))
      .map((p) => [label(p), ...ms.map((m) => pct(res[size][0][m]?.[p.id]?.gflops))]);
    rows.push([
      'ceiling over the best peer (peak ÷ best of tfjs, ort)',
      ...ms.map((m) => {
        const best = Math.max(...['tfjs', 'ort'].map((id) => res[size][0][m]?.[id]?.gflops ?? 0));
        return best ? fmt.ratio(peak.gflops / best) : '—';
      }),
    ]);
    out.push(
      `#### Share of the SIMD128 peak: linear, k = n = ${size}, one thread

` +
        `GFLOP/s of the table below ÷ this core's SIMD128 multiply-add peak measured in the same run, ${fmt.gflops(peak.gflops)} GFLOP/s (${peak.method}). ` +
        'SIMD128 has no fused multiply-add, so the peak bounds every library here; the last row is how far ahead of the best peer a kernel at 100 % of it would be.\n\n' +
        table(['library', ...ms.map((m) => `m=${m}`)], rows),
    );
  }

  for (const r of ranks) {
    const title = r ? `lora_linear, r = ${r}: y = x·Wᵀ + b + s·(x·A)·B` : 'linear (adapter off): y = x·Wᵀ + b';
    const rows = [];
    for (const size of sizes) for (const p of peers) {
      if (!ms.some((m) => res[size]?.[r]?.[m]?.[p.id])) continue;
      rows.push([label(p), `${size}`, ...ms.map((m) => cell(size, r, m, p))]);
    }
    out.push(`#### ${title}\n\n${legend}\n\n${table(['library', 'k = n', ...ms.map((m) => `m=${m}`)], rows)}`);
  }

  const threadsTable = threadedTable(all, res, sizes, ms, ranks);
  if (threadsTable) out.push(threadsTable);

  const costRows = peers
    .filter((p) => cost[p.id])
    .map((p) => [
      label(p),
      fmt.pct(cost[p.id][1]?.lora),
      fmt.pct(cost[p.id][64]?.lora),
      p.id === 'ours' ? fmt.pct(cost[p.id][1]?.off) : 'no toggle',
      p.id === 'ours' ? fmt.pct(cost[p.id][64]?.off) : 'no toggle',
    ]);
  costRows.push(['FLOP count (ideal)', fmt.pct(cost.ideal), fmt.pct(cost.ideal), '+0.0 %', '+0.0 %']);
  out.push(
    `#### What the adapter costs (k = n = ${costSize}, r = 16)\n\n` +
      'Time over the same library\'s plain linear: the calls interleaved one by one for 4 s; per round the ratio to the plain call, then the median over rounds. For peftjs these are its layers over one ' +
      'resident W: `LoRALinear.forward` against `Linear.forward`, and "off" is a `LoRALinear` with `loraEnabled = false`. ' +
      'Peers have no toggle: an adapter off there is another graph. Within ±2 % is this machine\'s noise.\n\n' +
      table(['library', 'LoRA on, m=1', 'LoRA on, m=64', 'off, m=1', 'off, m=64'], costRows),
  );
  out.push(
    'Setup, done once outside the timing, each peer on its fastest path: tfjs-backend-wasm gets W transposed to [k,n] and ' +
      '`tf.fused.matMul` with the bias (its `transposeB: true` path re-packs W on every call, ≈10× slower at k = n = 4096); ' +
      'onnxruntime-web gets a graph built in memory, `Gemm(transB=1)` plus a `MatMul → MatMul → Add` chain for LoRA; ' +
      'both get the LoRA scale folded into B. peftjs gets `backend.upload(W, { linearWeight: true })` (what a `Linear` does: W stored once in panels of 4 rows) and the scale at call time. ' +
      'Every output is checked against a float64 reference first.',
  );
  if (notes.length) out.push(notes.map((n) => `- ${n}`).join('\n'));
  return out.join('\n\n');
}

/** peftjs with T threads against itself on one thread and against the peers run with T threads. */
function threadedTable(all, res, sizes, ms, ranks) {
  const oursT = all.find((p) => p.id.startsWith('ours-t'));
  if (!oursT) return undefined;
  const T = oursT.backend.threads;
  const peersT = all.filter((p) => isThreaded(p) && !p.id.startsWith('ours'));
  const rows = [];
  for (const size of sizes)
    for (const r of ranks.filter((q) => q === 0 || q === 16))
      for (const m of ms) {
        const c = res[size]?.[r]?.[m];
        if (!c?.[oursT.id] || !c.ours) continue;
        const g = (id) => c[id]?.gflops;
        const best = Math.max(0, ...peersT.map((p) => g(p.id) ?? 0));
        rows.push([
          `${size}`,
          r ? `LoRA r=${r}` : 'linear',
          `${m}`,
          fmt.gflops(g('ours')),
          `**${fmt.gflops(g(oursT.id))}**`,
          fmt.ratio(g(oursT.id) / g('ours')),
          ...peersT.map((p) => (g(p.id) ? fmt.gflops(g(p.id)) : '—')),
          best ? `**${fmt.ratio(g(oursT.id) / best)}**` : '—',
        ]);
      }
  return (
    `#### With ${T} threads\n\n` +
    `GFLOP/s (higher is better), in the same interleaved rounds as the tables above; speed-up = peftjs ${T} threads ÷ peftjs 1 thread; ` +
    `the last column = peftjs ${T} threads ÷ the best peer run with ${T} threads (each peer in a worker thread of its own, x and y ` +
    `passed by message: part of its time). peftjs: ${oursT.label}.\n\n` +
    table(['k = n', 'op', 'm', 'peftjs 1 thread', `peftjs ${T} threads`, 'speed-up', ...peersT.map((p) => p.label), `÷ best ${T}-thread peer`], rows)
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const a = args();
  const list = (name) => {
    const i = process.argv.indexOf(`--${name}`);
    return i >= 0 ? process.argv[i + 1].split(',').map(Number) : undefined;
  };
  const r = await runGemm({ quick: a.quick, pick: { sizes: list('sizes'), ms: list('ms'), ranks: list('ranks') } });
  console.log(`Machine: ${machine()}\n\n${gemmTables(r)}`);
}
