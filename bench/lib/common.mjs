// Shared by every bench script: the machine line, package versions, deterministic data, timing, tables.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import os from 'node:os';

const require = createRequire(import.meta.url);

/** Installed version of a bench dependency (read from its package.json, so the table names what actually ran). */
export function pkgVersion(name) {
  try {
    return JSON.parse(readFileSync(require.resolve(`${name}/package.json`), 'utf8')).version;
  } catch {
    // onnxruntime-web's exports map does not list package.json: walk from its entry point.
    const entry = require.resolve(name);
    const root = entry.slice(0, entry.lastIndexOf(`/node_modules/${name}/`) + `/node_modules/${name}/`.length);
    return JSON.parse(readFileSync(`${root}package.json`, 'utf8')).version;
  }
}

export function machine() {
  const cpus = os.cpus();
  return `${cpus[0]?.model.trim() ?? 'unknown CPU'} (${cpus.length} logical cores), ${os.platform()} ${os.arch()}, Node ${process.version}`;
}

export { randomF32 } from './random.mjs';

/**
 * Times several functions against each other in rounds: each round runs every function (in a rotating order)
 * for about `roundMs`, and takes the median call of that stretch; the result per function is its best round.
 * On a shared machine a burst of other work spoils a round, not the answer, and it hits every function of
 * that round alike, so ratios stay fair. Async functions are awaited.
 */
export async function timeRounds(fns, { rounds = 5, roundMs = 100, warmup = 1 } = {}) {
  const ids = Object.keys(fns);
  const perCall = {};
  for (const id of ids) {
    let t0 = performance.now();
    for (let i = 0; i < warmup; i++) await fns[id]();
    t0 = performance.now();
    await fns[id]();
    perCall[id] = performance.now() - t0;
  }
  const best = {};
  for (let round = 0; round < rounds; round++) {
    for (let j = 0; j < ids.length; j++) {
      const id = ids[(round + j) % ids.length];
      const calls = Math.max(1, Math.min(500, Math.round(roundMs / Math.max(perCall[id], 1e-3))));
      const ts = [];
      for (let c = 0; c < calls; c++) {
        const t0 = performance.now();
        await fns[id]();
        ts.push(performance.now() - t0);
      }
      const med = median(ts);
      best[id] = Math.min(best[id] ?? Infinity, med);
    }
  }
  return best;
}

/**
 * Times several functions call by call: a, b, c, then b, c, a, … until `budgetMs` (at least `minIters` turns),
 * and returns each one's median call, after a warm-up of `warmup` turns and at least `warmupMs`. Neighbouring calls see the same machine, so this is the estimator for
 * differences of a few percent (an adapter's cost, an adapter switched off), where best-of-rounds is too noisy.
 */
export async function timeInterleaved(fns, opts) {
  return (await timeInterleavedSamples(fns, opts)).medians;
}

/** The same rounds: `samples[id][i]` = ms of fns[id] in round i, and their medians. */
export async function timeInterleavedSamples(fns, { budgetMs = 3000, minIters = 15, warmup = 2, warmupMs = 400 } = {}) {
  const ids = Object.keys(fns);
  // Warm up by count and by time: V8 runs wasm in its baseline tier (Liftoff) until a function is hot and its
  // optimised code is ready, and a kernel first used here may still be in Liftoff after a couple of calls.
  const w0 = performance.now();
  for (let i = 0; i < warmup || performance.now() - w0 < warmupMs; i++) for (const id of ids) await fns[id]();
  const ts = Object.fromEntries(ids.map((id) => [id, []]));
  const start = performance.now();
  for (let i = 0; i < minIters || performance.now() - start < budgetMs; i++) {
    for (let j = 0; j < ids.length; j++) {
      const id = ids[(i + j) % ids.length];
      const t0 = performance.now();
      await fns[id]();
      ts[id].push(performance.now() - t0);
    }
  }
  return { medians: Object.fromEntries(ids.map((id) => [id, median(ts[id])])), samples: ts };
}

/** Median over rounds of samples[a][i] ÷ samples[b][i]: each ratio within one round, so a burst of load on the
 * machine, which slows a round's calls alike, cancels (a ratio of two medians does not have that). */
export function pairedRatio(samples, a, b) {
  return median(samples[a].map((t, i) => t / samples[b][i]));
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

/** Markdown table: `head` is the header row, `rows` arrays of cells. */
export function table(head, rows) {
  const line = (cells) => `| ${cells.join(' | ')} |`;
  return [line(head), line(head.map((_, i) => (i === 0 ? '---' : '---:'))), ...rows.map(line)].join('\n');
}

export const fmt = {
  gflops: (x) => (x === undefined ? '—' : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)),
  ratio: (x) => (x === undefined || !Number.isFinite(x) ? '—' : `${x.toFixed(2)}×`),
  pct: (x) => (x === undefined ? '—' : `${x >= 0 ? '+' : ''}${x.toFixed(1)} %`),
  ms: (x) => (x >= 100 ? x.toFixed(0) : x >= 1 ? x.toFixed(1) : x.toFixed(3)),
};

/** Parses `--only a,b` and `--quick` from argv. */
export function args(argv = process.argv.slice(2)) {
  const out = { only: undefined, quick: false };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--only') out.only = argv[++i]?.split(',');
    else if (argv[i].startsWith('--only=')) out.only = argv[i].slice(7).split(',');
    else if (argv[i] === '--quick') out.quick = true;
  }
  return out;
}
