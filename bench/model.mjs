// Question: how fast does a whole language model run, next to the engine transformers.js runs on?
//  1. pycoder (models/pycoder, a 6-layer Llama) side by side with onnxruntime-web on the same weights, one run:
//     prefill tokens/s at S 16 / 64 / 256 and decode tokens/s (128 tokens after a 16-token prompt); ours with bf16
//     and with f32 weights (wasm, one thread), ORT's WASM EP with 1 and with 2 threads (each in its own worker:
//     ORT reads its thread count once per wasm instance). Every engine's output is checked first.
//  2. A synthetic model with Qwen2.5-0.5B's shapes (random bf16 weights made here): decode and prefill tokens/s on
//     one thread and on every core, each against its bandwidth bound (weight bytes per token ÷ the read bandwidth of
//     the same number of threads, measured in the same rounds).
//  3. Speculative decoding on pycoder with the draft-l2 / draft-l3 LoRA drafters: acceptance, tokens per
//     verification, draft cost, measured vs predicted speed-up over plain greedy.
//  4. WebGPU when an adapter is there (Node `webgpu` package): correctness on a software adapter, timed rows on a
//     hardware one; otherwise the reason it was skipped.
// Timing: interleaved rounds, each round runs every engine once per task in a shuffled (seeded) order, an idle pause
// before each (SETTLE_MS); a figure is the median over rounds, a ratio the median of the per-round ratios (a burst of load hits a round's engines alike).
//   node model.mjs [--quick] [--part pycoder,synthetic,speculative,webgpu]
// writes results-model.md (--quick: .scratch/results-model-quick.md, so a smoke run keeps the full run's figures).
process.env.VK_ICD_FILENAMES ??= '/usr/lib/chromium/vk_swiftshader_icd.json'; // before Dawn starts: see webgpu.mjs
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { machine, median, pkgVersion, table, timeInterleaved } from './lib/common.mjs';
import { bandwidthProbe, bandwidthProbeThreads } from './lib/bandwidth.mjs';
import { buildGraphs, DEFAULT_OUT, readSafetensors } from './lib/build-onnx.mjs';
import { loadLib } from './lib/ours.mjs';
import { QWEN25_05B, syntheticCheckpoint } from './lib/synthetic-lm.mjs';

const ROOT = new URL('../', import.meta.url);
const PYCODER = fileURLToPath(new URL('models/pycoder/', ROOT));
const ORACLE = fileURLToPath(new URL('test/fixtures/models/pycoder/', ROOT));
const TOL = 1e-4; // logits agree within TOL · max|logit|
const PARTS = ['pycoder', 'synthetic', 'speculative', 'webgpu'];

/**
 * An idle pause before every timed task, so each starts on a quiet machine: the engine before it may leave threads
 * spinning for a while after its last call (ORT's pool, our workers' SPIN_LOADS) on a core the next one needs. Measured
 * on pycoder (2 cores): our two-thread decode read 2,157 tokens/s back to back, 2,481 with 50 ms between tasks (one
 * thread 2,519 / 2,535); no engine ran slower for it.
 */
const SETTLE_MS = 50;
const settle = () => new Promise((resolve) => setTimeout(resolve, SETTLE_MS));

/** Seeded shuffle (mulberry32), so a run's engine orders can be replayed. */
function shuffler(seed) {
  let s = seed >>> 0;
  const rnd = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return (xs) => {
    const a = [...xs];
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a;
  };
}

/** max|a − b| ÷ max|b|. */
function relDiff(a, b) {
  if (a.length !== b.length) return Infinity;
  let e = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    e = Math.max(e, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return e / m;
}

const sameTokens = (a, b) => a.length === b.length && a.every((t, i) => t === b[i]);

/** Python source to tokenise for the prompts (real code, so the prompts look like what the model was trained on). */
const PY_TEXT = `import os
import sys
from collections import defaultdict


def read_config(path, defaults=None):
    """Read a key = value file into a dict, falling back to defaults."""
    result = dict(defaults or {})
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not sep:
                raise ValueError("%s:%d: expected key = value" % (path, lineno))
            result[key.strip()] = value.strip()
    return result


class Counter(defaultdict):
    def __init__(self, iterable=()):
        super().__init__(int)
        for item in iterable:
            self[item] += 1

    def most_common(self, n=None):
        items = sorted(self.items(), key=lambda kv: kv[1], reverse=True)
        return items if n is None else items[:n]
`;

/** Token ids of `n` tokens of Python (the text repeated as needed). */
function pyIds(tokenizer, n) {
  let ids = tokenizer.encode(PY_TEXT);
  while (ids.length < n) ids = ids.concat(tokenizer.encode(PY_TEXT));
  return ids.slice(0, n);
}

// ---------------------------------------------------------------------------------------------------- engines

/** onnxruntime-web in a worker thread (its own wasm instance and thread count). */
async function ortEngine({ graphs, cfg, threads }) {
  const w = new Worker(new URL('./lib/ort-worker.mjs', import.meta.url), {
    workerData: { prefill: graphs.prefill, decode: graphs.decode, threads, layers: cfg.num_hidden_layers, vocab: cfg.vocab_size, eos: [cfg.eos_token_id].flat() },
  });
  const pending = new Map();
  let next = 0;
  await new Promise((resolve, reject) => {
    w.once('error', reject);
    w.on('message', (m) => {
      if (m.ready) return resolve();
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (m.error) p.reject(new Error(m.error));
      else p.resolve(m.result);
    });
  });
  w.on('error', (e) => {
    for (const p of pending.values()) p.reject(e);
  });
  const call = (op, args) =>
    new Promise((resolve, reject) => {
      const id = ++next;
      pending.set(id, { resolve, reject });
      w.postMessage({ id, op, args });
    });
  return {
    id: `ort-${threads}t`,
    short: `ORT ${threads} thread${threads > 1 ? 's' : ''}`,
    label: `onnxruntime-web ${pkgVersion('onnxruntime-web')} wasm, ${threads} thread${threads > 1 ? 's' : ''}`,
    weights: 'f32',
    prefill: (ids, keep = false) => call('logits', { ids, keep }),
    generate: (prompt, maxNew) => call('generate', { prompt, maxNew }),
    close: async () => {
      await call('release', {}).catch(() => {});
      await w.terminate();
    },
  };
}

/** Our CausalLM as an engine (greedy, the model's eos stops as in ORT's loop). */
function oursEngine(lm, id, label, weights, short) {
  return {
    id,
    short,
    label,
    weights,
    lm,
    async prefill(ids, keep = false) {
      const t0 = performance.now();
      const logits = await lm.logits(ids);
      const ms = performance.now() - t0;
      return { ms, logits: keep ? logits : undefined };
    },
    async generate(prompt, maxNew) {
      const r = await lm.generate(prompt, { maxNewTokens: maxNew, stop: [] });
      return { tokens: r.tokens, decodeTokensPerSecond: r.stats.decodeTokensPerSecond, prefillTokensPerSecond: r.stats.prefillTokensPerSecond };
    },
    close: async () => lm.dispose(),
  };
}

/**
 * The Node `webgpu` package (a root devDependency). The GPU object it returns owns Dawn's instance: it is kept here
 * for the life of the process, since a backend holding only the adapter and device crashes (SIGSEGV, glibc
 * assertions, hangs) once V8 collects it.
 */
let keepGpu;
async function nodeGpu() {
  const require = createRequire(new URL('../package.json', import.meta.url));
  const { create, globals } = await import(require.resolve('webgpu'));
  Object.assign(globalThis, globals);
  keepGpu = create([]);
  return keepGpu;
}

/** A WebGPU backend, or `{ reason }`. */
async function webgpuBackend(lib) {
  let gpu;
  try {
    gpu = await nodeGpu();
  } catch (e) {
    return { reason: `the \`webgpu\` package did not load (${e.message.split('\n')[0]})` };
  }
  try {
    const be = await lib.createBackend('webgpu', { gpu });
    return { be, software: Boolean(be.software ?? be.ctx?.software), adapter: be.ctx?.description ?? 'unknown adapter' };
  } catch (e) {
    return { reason: `no WebGPU adapter (${e.message.split('\n')[0]})` };
  }
}

// ---------------------------------------------------------------------------------------------------- part 1

/**
 * Correctness of every engine, before any timing: greedy tokens = the oracle's (greedy_off, 5 prompts × 64), logits
 * at the oracle prompts within TOL of the oracle's, prefill logits at each S within TOL of ORT 1-thread's, and the
 * timed prompt's greedy tokens equal across engines.
 */
async function checkEngines(engines, { oracle, oracleLogits, sizes, prefillIds, prompt, maxNew, log }) {
  const ref = engines.find((e) => e.id === 'ort-1t') ?? engines[0];
  const refLogits = {};
  for (const S of sizes) refLogits[S] = (await ref.prefill(prefillIds[S], true)).logits;
  const refGen = await ref.generate(prompt, maxNew);
  const rows = [];
  for (const e of engines) {
    const row = { id: e.id, label: e.label, oracleTokens: 0, oracleTotal: 0, oracleLogits: 0, crossLogits: 0, benchTokens: false, benchLen: 0, ok: true };
    for (const [i, p] of oracle.prompts.entries()) {
      const g = await e.generate(p.ids, p.greedy_off.length);
      let k = 0;
      while (k < p.greedy_off.length && g.tokens[k] === p.greedy_off[k]) k++;
      row.oracleTokens += k;
      row.oracleTotal += p.greedy_off.length;
      const lg = (await e.prefill(p.ids, true)).logits;
      row.oracleLogits = Math.max(row.oracleLogits, relDiff(lg, oracleLogits[i]));
    }
    for (const S of sizes) row.crossLogits = Math.max(row.crossLogits, relDiff((await e.prefill(prefillIds[S], true)).logits, refLogits[S]));
    const g = await e.generate(prompt, maxNew);
    row.benchTokens = sameTokens(g.tokens, refGen.tokens);
    row.benchLen = g.tokens.length;
    row.ok = row.oracleTokens === row.oracleTotal && row.oracleLogits <= TOL && row.crossLogits <= TOL && row.benchTokens;
    log(`  check ${e.id}: oracle greedy ${row.oracleTokens}/${row.oracleTotal}, oracle logits ${row.oracleLogits.toExponential(1)}, vs ${ref.id} logits ${row.crossLogits.toExponential(1)}, timed prompt's ${row.benchLen} tokens ${row.benchTokens ? 'equal' : 'DIFFER'} → ${row.ok ? 'ok' : 'FAIL'}`);
    rows.push(row);
  }
  return { ref: ref.id, refLen: refGen.tokens.length, rows, ok: rows.every((r) => r.ok) };
}

/** Interleaved, shuffled rounds over `tasks` × `engines`; returns samples[engine][task] = [value per round]. */
async function rounds(engines, tasks, { n, warmupMs, seed, log }) {
  const shuffle = shuffler(seed);
  for (const e of engines) {
    const t0 = performance.now();
    do for (const t of tasks) await t.run(e);
    while (performance.now() - t0 < warmupMs);
  }
  const samples = Object.fromEntries(engines.map((e) => [e.id, Object.fromEntries(tasks.map((t) => [t.id, []]))]));
  for (let r = 0; r < n; r++) {
    for (const t of tasks)
      for (const e of shuffle(engines)) {
        await settle();
        samples[e.id][t.id].push(await t.run(e));
      }
    log(`  round ${r + 1}/${n}: ${engines.map((e) => `${e.id} ${tasks.map((t) => samples[e.id][t.id].at(-1).toFixed(0)).join('/')}`).join(' · ')}`);
  }
  return samples;
}

/** Median over rounds of a / b, paired by round. */
const pairedRatio = (a, b) => median(a.map((x, i) => x / b[i]));

async function runPycoder({ lib, quick, log }) {
  // One thread, as the peer's first row; init()'s default takes every core, which gets its own rows below.
  const be = await lib.createBackend('wasm', { threads: 1 });
  const be2 = await lib.createBackend('wasm', { threads: 2 });
  const cfg = JSON.parse(readFileSync(`${PYCODER}base/config.json`, 'utf8'));
  const oracle = JSON.parse(readFileSync(`${ORACLE}oracle.json`, 'utf8'));
  const oracleT = readSafetensors(`${ORACLE}oracle.safetensors`);
  const oracleLogits = oracle.prompts.map((_, i) => oracleT[`p${i}.logits_off`].data);
  const t0 = performance.now();
  const graphs = buildGraphs(PYCODER);
  mkdirSync(DEFAULT_OUT, { recursive: true });
  writeFileSync(`${DEFAULT_OUT}/prefill.onnx`, graphs.prefill);
  writeFileSync(`${DEFAULT_OUT}/decode.onnx`, graphs.decode);
  log(`  ONNX twin built in ${((performance.now() - t0) / 1000).toFixed(1)} s → ${DEFAULT_OUT} (prefill ${(graphs.prefill.length / 1e6).toFixed(1)} MB, decode ${(graphs.decode.length / 1e6).toFixed(1)} MB)`);

  const bf16 = await lib.CausalLM.load(`${PYCODER}base`, { backend: be, weightDtype: 'bf16' });
  const f32 = await lib.CausalLM.load(`${PYCODER}base`, { backend: be, weightDtype: 'f32' });
  const bf16t2 = await lib.CausalLM.load(`${PYCODER}base`, { backend: be2, weightDtype: 'bf16' });
  const version = lib.VERSION ?? '0.1.0';
  const engines = [
    oursEngine(bf16, 'ours-bf16', `peftjs ${version} wasm (${be.build}), 1 thread, bf16 weights`, 'bf16', 'ours bf16'),
    oursEngine(f32, 'ours-f32', `peftjs ${version} wasm (${be.build}), 1 thread, f32 weights`, 'f32', 'ours f32'),
    oursEngine(bf16t2, 'ours-bf16-2t', `peftjs ${version} wasm (${be2.build}), ${be2.threads} threads, bf16 weights`, 'bf16', 'ours bf16 2t'),
    await ortEngine({ graphs, cfg, threads: 1 }),
    await ortEngine({ graphs, cfg, threads: 2 }),
  ];

  const sizes = [16, 64, 256];
  const prefillIds = Object.fromEntries(sizes.map((S) => [S, pyIds(bf16.tokenizer, S)]));
  const prompt = pyIds(bf16.tokenizer, 16);
  const maxNew = 129; // the first token comes from the prefill: 128 decode steps after it
  const check = await checkEngines(engines, { oracle, oracleLogits, sizes, prefillIds, prompt, maxNew, log });
  const decodeSteps = check.refLen - 1;

  const tasks = [
    // A prefill at S = 16 takes milliseconds: the median of a few calls per round (about 4 × 64 tokens), so one
    // preempted call does not make the round's sample.
    ...sizes.map((S) => ({
      id: `prefill${S}`,
      run: async (e) => {
        const ms = [];
        for (let i = 0; i < Math.max(1, Math.round(256 / S)); i++) ms.push((await e.prefill(prefillIds[S])).ms);
        return (S * 1000) / median(ms);
      },
    })),
    { id: 'decode', run: async (e) => (await e.generate(prompt, maxNew)).decodeTokensPerSecond },
  ];
  const n = quick ? 3 : 15;
  const samples = await rounds(engines, tasks, { n, warmupMs: quick ? 500 : 2000, seed: 0x5eed, log });
  for (const e of engines) await e.close();
  const med = Object.fromEntries(engines.map((e) => [e.id, Object.fromEntries(tasks.map((t) => [t.id, median(samples[e.id][t.id])]))]));
  const ratios = [];
  for (const ours of engines.filter((e) => e.id.startsWith('ours'))) {
    for (const peer of engines.filter((e) => e.id.startsWith('ort'))) {
      ratios.push({ ours: ours.id, peer: peer.id, label: `${ours.short} ÷ ${peer.short}`, ...Object.fromEntries(tasks.map((t) => [t.id, pairedRatio(samples[ours.id][t.id], samples[peer.id][t.id])])) });
    }
  }
  return {
    engines: engines.map((e) => ({ id: e.id, label: e.label, weights: e.weights })),
    tasks: tasks.map((t) => t.id),
    sizes,
    rounds: n,
    decodeSteps,
    promptLen: prompt.length,
    check,
    med,
    ratios,
  };
}

function pycoderTables(r) {
  const fmt0 = (x) => Math.round(x).toLocaleString('en-US');
  const cols = [...r.sizes.map((S) => `prefill S=${S}`), `decode (${r.decodeSteps} tokens after ${r.promptLen})`];
  const speed = table(
    ['engine (tokens/s, median)', ...cols],
    r.engines.map((e) => [e.id.startsWith('ours') ? `**${e.label}**` : e.label, ...r.tasks.map((t) => (e.id.startsWith('ours') ? `**${fmt0(r.med[e.id][t])}**` : fmt0(r.med[e.id][t])))]),
  );
  const ratio = table(['ours ÷ ORT (median of per-round ratios)', ...cols], r.ratios.map((x) => [x.label, ...r.tasks.map((t) => `${x[t].toFixed(2)}×`)]));
  const checks = table(
    ['engine', 'greedy = oracle (5 prompts)', 'logits vs oracle', `prefill logits vs ${r.check.ref} (S ${r.sizes.join('/')})`, `timed prompt, ${r.check.refLen} greedy tokens`, 'ok'],
    r.check.rows.map((x) => [x.id, `${x.oracleTokens}/${x.oracleTotal}`, x.oracleLogits.toExponential(1), x.crossLogits.toExponential(1), x.benchTokens ? 'equal' : '**differ**', x.ok ? 'yes' : '**FAIL**']),
  );
  return [
    '#### pycoder (6-layer Llama, d 256, vocab 2,048, 4.95 M params) vs onnxruntime-web on the same weights',
    '',
    `Tokens/s, higher is better; ${r.rounds} interleaved rounds (engine order shuffled per task and round, ${SETTLE_MS} ms idle before each task; a prefill sample is the median of ⌈256 ÷ S⌉ calls), medians over rounds. ` +
      `Prefill = one forward over S tokens of Python returning all S × 2,048 logits (the work ORT's prefill graph does); ` +
      `decode = greedy, KV cache, ${r.decodeSteps} steps after a ${r.promptLen}-token prompt (the first token comes from the prefill). ` +
      `ORT runs the ONNX twin built by lib/build-onnx.mjs (f32 weights widened exactly from the bf16 checkpoint, standard opset-17 ops, ` +
      `graphOptimizationLevel all), each thread count in its own worker thread.`,
    '',
    speed,
    '',
    ratio,
    '',
    `Checks, before timing (logits: max|Δ| ÷ max|logit|, must be ≤ ${TOL}):`,
    '',
    checks,
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------------- part 2

async function runSynthetic({ lib, quick, log }) {
  // One thread (the read loop's bound is one thread's), and every core (init()'s default) against the same read loops
  // on that many threads at once.
  const cores = os.cpus().length;
  const backends = [await lib.createBackend('wasm', { threads: 1 })];
  if (cores > 1) backends.push(await lib.createBackend('wasm', { threads: cores }));
  const t0 = performance.now();
  let ckpt = syntheticCheckpoint(lib.writeSafetensors);
  const { params, weightBytes } = ckpt;
  const lms = [];
  for (const be of backends) lms.push(await lib.CausalLM.load(ckpt.files, { backend: be, weightDtype: 'bf16', maxLength: 512 }));
  ckpt = undefined; // the file bytes can go
  log(`  synthetic Qwen2.5-0.5B shapes: ${(params / 1e6).toFixed(1)} M params, ${(weightBytes / 1e9).toFixed(3)} GB bf16, made and loaded ${lms.length}× in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const probes = [await bandwidthProbe(256)];
  if (cores > 1) probes.push(await bandwidthProbeThreads(backends[1].threads, 256));
  const V = QWEN25_05B.vocab_size;
  const ids = (n, salt) => Array.from({ length: n }, (_, i) => (i * 7919 + salt * 104729 + 13) % V);
  const newTokens = quick ? 8 : 32;
  const S = 64;
  // Warm-up (V8 tiers wasm up lazily): a short generation and the probes.
  for (const lm of lms) await lm.generate(ids(16, 0), { maxNewTokens: 3, stop: [] });
  for (const p of probes) await p.measure(2);
  const n = quick ? 2 : 5;
  const shuffle = shuffler(0xb4d);
  const cols = lms.map((_, c) => ({ threads: backends[c].threads, bw: [], decode: [], prefill16: [], prefill64: [], ofBound: [] }));
  const tasks = cols.flatMap((_, c) => ['bw', 'decode', ...(quick ? [] : ['prefill'])].map((t) => [t, c]));
  for (let r = 0; r < n; r++) {
    const got = cols.map(() => ({}));
    for (const [task, c] of shuffle(tasks)) {
      await settle();
      if (task === 'bw') got[c].bw = await probes[c].measure(5);
      else if (task === 'decode') got[c].dec = await lms[c].generate(ids(16, r + 1), { maxNewTokens: newTokens + 1, stop: [] });
      else cols[c].prefill64.push((await lms[c].generate(ids(S, r + 101), { maxNewTokens: 1, stop: [] })).stats.prefillTokensPerSecond);
    }
    for (const [c, s] of cols.entries()) {
      s.bw.push(got[c].bw);
      s.decode.push(got[c].dec.stats.decodeTokensPerSecond);
      s.prefill16.push(got[c].dec.stats.prefillTokensPerSecond);
      s.ofBound.push(s.decode.at(-1) / ((got[c].bw * 1e9) / weightBytes));
      log(`  round ${r + 1}/${n}, ${s.threads} thread${s.threads > 1 ? 's' : ''}: read ${s.bw.at(-1).toFixed(1)} GB/s, decode ${s.decode.at(-1).toFixed(2)} tok/s (${(s.ofBound.at(-1) * 100).toFixed(0)} % of bound), prefill S=16 ${s.prefill16.at(-1).toFixed(1)}${s.prefill64.length > r ? `, S=64 ${s.prefill64.at(-1).toFixed(1)}` : ''} tok/s`);
    }
  }
  for (const lm of lms) lm.dispose();
  await probes[1]?.dispose();
  const perThreads = cols.map((s) => {
    const bw = median(s.bw);
    return {
      threads: s.threads,
      bw,
      bound: (bw * 1e9) / weightBytes,
      decode: median(s.decode),
      ofBound: median(s.ofBound),
      prefill16: median(s.prefill16),
      prefill64: s.prefill64.length ? median(s.prefill64) : undefined,
    };
  });
  const scaling = cols.length > 1 && {
    decode: pairedRatio(cols[1].decode, cols[0].decode),
    prefill16: pairedRatio(cols[1].prefill16, cols[0].prefill16),
    prefill64: cols[0].prefill64.length ? pairedRatio(cols[1].prefill64, cols[0].prefill64) : undefined,
    bw: pairedRatio(cols[1].bw, cols[0].bw),
  };
  return { params, weightBytes, methods: probes.map((p) => p.method), rounds: n, newTokens, ...perThreads[0], perThreads, scaling };
}

function syntheticTables(r) {
  const c = QWEN25_05B;
  const cols = r.perThreads ?? [r];
  const head = cols.map((t) => `${t.threads ?? 1} thread${(t.threads ?? 1) > 1 ? 's' : ''}`);
  const x = (v) => (v === undefined ? '—' : `${v.toFixed(2)}×`);
  const row = (name, f, ratio) => [name, ...cols.map(f), ...(r.scaling ? [ratio === undefined ? '' : x(ratio)] : [])];
  return [
    `#### Synthetic model with Qwen2.5-0.5B's shapes (hidden ${c.hidden_size}, ${c.num_hidden_layers} layers, ${c.num_attention_heads}/${c.num_key_value_heads} heads, head_dim ${c.head_dim}, ffn ${c.intermediate_size}, vocab ${c.vocab_size.toLocaleString('en-US')}, tied; random bf16 weights made at bench time)`,
    '',
    `peftjs wasm, bf16 weights, on one thread and on every core; ${r.rounds} rounds (the tasks of both in a shuffled order each round), medians. Weight bytes per token: ${(r.weightBytes / 1e9).toFixed(3)} GB ` +
      `(${(r.params / 1e6).toFixed(1)} M params × 2 B; the tied embedding table counted once, read whole by the head). ` +
      `Read bandwidth: ${(r.methods ?? [r.method]).join('; ')}; measured in the same rounds as decode. Bound = bandwidth ÷ bytes per token; % of bound is per round, then the median; ÷ 1 thread is the median of per-round ratios.`,
    '',
    table(
      ['measure', ...head, ...(r.scaling ? [`${head[1]} ÷ 1 thread`] : [])],
      [
        row(`decode tokens/s (greedy, ${r.newTokens} steps after 16 tokens)`, (t) => `**${t.decode.toFixed(2)}**`, r.scaling?.decode),
        row('read bandwidth (the same threads)', (t) => `${t.bw.toFixed(1)} GB/s`, r.scaling?.bw),
        row('bandwidth bound on decode', (t) => `${t.bound.toFixed(2)} tokens/s`),
        row('decode, % of the bound', (t) => `**${(t.ofBound * 100).toFixed(0)} %**`),
        row('prefill tokens/s, S = 16 (last position\'s logits, as generation does)', (t) => t.prefill16.toFixed(1), r.scaling?.prefill16),
        row('prefill tokens/s, S = 64', (t) => (t.prefill64 === undefined ? '— (not in --quick)' : t.prefill64.toFixed(1)), r.scaling?.prefill64),
      ],
    ),
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------------- part 3

/**
 * Step costs measured on their own (interleaved, medians): one plain decode step c₁ (m = 1, all layers), one draft
 * step per drafter (first K layers + head, its adapter on), and a verification over r = 1…9 rows (all layers,
 * adapters off, logits of every row), and per drafter a forward over L = 8, 32, 128 new tokens (last logits only:
 * what a separate drafter's catch-up runs), fitted as a + b·L. Positions 16…: the cache holds a 16-token prompt; each
 * call rolls back.
 */
async function stepCosts(lm, drafters, { budgetMs }) {
  const prompt = pyIds(lm.tokenizer, 16);
  const pos = prompt.length;
  const full = lm.target();
  await full.run(prompt, 0, true);
  const fns = {};
  const timed = (t, ids, lastOnly) => async () => {
    await t.run(ids, pos, lastOnly);
    t.truncate(pos);
  };
  fns.c1 = timed(full, [prompt[1]], true);
  const more = pyIds(lm.tokenizer, pos + CATCHUP_L.at(-1)).slice(pos);
  for (const d of drafters) {
    const t = lm.target({ layers: d.exit, adapter: { name: d.name, on: true } });
    fns[d.name] = timed(t, [prompt[1]], true);
    for (const L of CATCHUP_L) fns[`${d.name} L${L}`] = timed(t, more.slice(0, L), true);
  }
  for (let r = 2; r <= 9; r++) fns[`v${r}`] = timed(full, prompt.slice(0, r), false);
  // Adapters are switched per call by their targets: switch every drafter off for the plain and verify calls.
  const off = (f) => async () => {
    for (const d of drafters) d.container.enabled = false;
    await f();
  };
  for (const k of Object.keys(fns)) if (!drafters.some((d) => d.name === k)) fns[k] = off(fns[k]);
  const ms = await timeInterleaved(fns, { budgetMs, minIters: 30 });
  for (const d of drafters) d.container.enabled = false;
  lm.cache.truncate(0);
  const c1 = ms.c1;
  const verify = [1, ...[2, 3, 4, 5, 6, 7, 8, 9].map((r) => ms[`v${r}`] / c1)]; // verify[r − 1] = cost of r rows ÷ c₁
  const catchup = Object.fromEntries(drafters.map((d) => [d.name, fitLine(CATCHUP_L, CATCHUP_L.map((L) => ms[`${d.name} L${L}`] / c1))]));
  return { c1, draft: Object.fromEntries(drafters.map((d) => [d.name, ms[d.name] / c1])), verify, catchup };
}

/** Token counts of the timed catch-up forwards (a probe in 'auto' catches up over 16 … 128 tokens here). */
const CATCHUP_L = [8, 32, 128];

/** Least-squares a + b·x through the points (x, y). */
function fitLine(xs, ys) {
  const n = xs.length, mx = xs.reduce((p, q) => p + q) / n, my = ys.reduce((p, q) => p + q) / n;
  let sxy = 0, sxx = 0;
  for (let i = 0; i < n; i++) (sxy += (xs[i] - mx) * (ys[i] - my)), (sxx += (xs[i] - mx) ** 2);
  const b = sxy / sxx;
  return { a: my - b * mx, b };
}

/** Cost of verifying `rows` (fractional: a mean) rows ÷ c₁, linear between the measured sizes. */
function verifyAt(verify, rows) {
  const r = Math.min(Math.max(rows, 1), verify.length);
  const lo = Math.floor(r);
  const hi = Math.min(lo + 1, verify.length);
  return verify[lo - 1] + (verify[hi - 1] - verify[lo - 1]) * (r - lo);
}

async function runSpeculative({ lib, quick, log }) {
  const be = await lib.createBackend('wasm', { threads: 1 });
  const lm = await lib.CausalLM.load(`${PYCODER}base`, { backend: be, weightDtype: 'bf16' });
  const oracle = JSON.parse(readFileSync(`${ORACLE}oracle.json`, 'utf8'));
  const drafters = [];
  for (const [name, exit] of [['draft-l2', 2], ['draft-l3', 3]]) {
    const container = await lib.LoRAContainer.load(`${PYCODER}${name}`, { name });
    container.apply(lm);
    container.enabled = false;
    const meta = JSON.parse(readFileSync(`${ORACLE}${name}/oracle.json`, 'utf8'));
    drafters.push({ name, exit, container, top1: meta.top1_agreement.draft_lora });
  }
  const configs = [];
  for (const d of drafters) for (const shared of [true, false]) for (const tokens of [2, 4, 'auto']) configs.push({ id: `${d.name} ${shared ? 'shared' : 'separate'} γ ${tokens}`, d, shared, tokens });
  const prompts = oracle.prompts.map((p) => p.ids);
  const maxNew = quick ? 65 : 129;
  const n = quick ? 1 : 10;
  const shuffle = shuffler(0x5bec);
  const plain = (prompt) => lm.generate(prompt, { maxNewTokens: maxNew, stop: [] });
  const spec = (c, prompt) => lm.generate(prompt, { maxNewTokens: maxNew, stop: [], draft: { adapter: c.d.name, exitAfterLayers: c.d.exit, sharedCache: c.shared, tokens: c.tokens } });
  // Lossless check (every prompt; two in --quick) against plain greedy, and plain greedy against the oracle's 64 tokens;
  // these runs are also the warm-up.
  const plainTokens = [];
  let oracleOk = true;
  const checked = quick ? prompts.slice(0, 2) : prompts;
  for (const [i, p] of checked.entries()) {
    plainTokens[i] = (await plain(p)).tokens;
    oracleOk &&= sameTokens(plainTokens[i].slice(0, 64), oracle.prompts[i].greedy_off);
  }
  const acc = Object.fromEntries(configs.map((c) => [c.id, { lossless: 0, runs: 0, accepted: 0, rejected: 0, drafted: 0, rounds: 0, plainSteps: 0, catchupSteps: 0, catchupTokens: 0, steps: 0, predicted: [], measured: [] }]));
  for (const c of configs) for (const [i, p] of checked.entries()) {
    const r = await spec(c, p);
    acc[c.id].lossless += sameTokens(r.tokens, plainTokens[i]) ? 1 : 0;
    acc[c.id].runs++;
  }
  log(`  lossless: ${configs.map((c) => `${c.id} ${acc[c.id].lossless}/${acc[c.id].runs}`).join(', ')}; plain greedy = oracle greedy_off: ${oracleOk}`);
  const costs = await stepCosts(lm, drafters, { budgetMs: quick ? 1000 : 5000 });
  log(`  step costs: c₁ ${costs.c1.toFixed(3)} ms; draft ÷ c₁ ${drafters.map((d) => `${d.name} ${costs.draft[d.name].toFixed(2)}`).join(', ')}; verify r rows ÷ c₁ ${costs.verify.map((x) => x.toFixed(2)).join(' ')}; catch-up over L tokens ÷ c₁ ${drafters.map((d) => `${d.name} ${costs.catchup[d.name].a.toFixed(2)} + ${costs.catchup[d.name].b.toFixed(3)}·L`).join(', ')}`);
  const plainRates = [];
  for (let r = 0; r < n; r++) {
    const p = prompts[r % prompts.length];
    let base;
    const got = {};
    for (const c of shuffle([null, ...configs])) {
      const g = c ? await spec(c, p) : await plain(p);
      if (c) got[c.id] = g;
      else base = g;
    }
    plainRates.push(base.stats.decodeTokensPerSecond);
    for (const c of configs) {
      const s = got[c.id].stats.speculative;
      const a = acc[c.id];
      a.accepted += s.accepted;
      a.rejected += s.rejected;
      a.drafted += s.drafted;
      a.rounds += s.rounds;
      a.plainSteps += s.plainSteps;
      a.catchupSteps += s.catchupSteps;
      a.catchupTokens += s.catchupTokens;
      a.steps += got[c.id].tokens.length - 1;
      a.predicted.push(s.predictedSpeedup);
      a.measured.push(got[c.id].stats.decodeTokensPerSecond / base.stats.decodeTokensPerSecond);
    }
    log(`  round ${r + 1}/${n}: plain ${base.stats.decodeTokensPerSecond.toFixed(0)} tok/s; ${configs.map((c) => `${c.id} ${acc[c.id].measured.at(-1).toFixed(2)}×`).join(', ')}`);
  }
  lm.dispose();
  const rows = configs.map((c) => {
    const a = acc[c.id];
    const verifications = a.rounds + a.plainSteps;
    const tokensPerRound = a.steps / Math.max(verifications, 1);
    const draftsPerVerification = a.drafted / Math.max(verifications, 1);
    // A catch-up forward over L tokens also drafts: its cost beyond a draft step's, a + b·L − draft, per verification.
    const cu = costs.catchup[c.d.name];
    const catchup = (a.catchupSteps * (cu.a - costs.draft[c.d.name]) + a.catchupTokens * cu.b) / Math.max(verifications, 1);
    const roundCost = draftsPerVerification * costs.draft[c.d.name] + catchup + verifyAt(costs.verify, 1 + draftsPerVerification);
    const predicted = tokensPerRound / roundCost;
    const measured = median(a.measured);
    return {
      id: c.id,
      drafter: c.d.name,
      cache: c.shared ? 'shared' : 'separate',
      gamma: c.tokens,
      top1: c.d.top1,
      lossless: `${a.lossless}/${a.runs}`,
      losslessOk: a.lossless === a.runs,
      acceptance: a.accepted / Math.max(a.accepted + a.rejected, 1),
      draftsPerVerification,
      plainShare: a.plainSteps / Math.max(verifications, 1),
      tokensPerRound,
      catchup,
      draftCost: costs.draft[c.d.name],
      roundCost,
      measured,
      predicted,
      libPredicted: median(a.predicted),
      agree: Math.abs(measured / predicted - 1),
    };
  });
  return { rows, costs, rounds: n, plain: median(plainRates), decodeSteps: maxNew - 1, oracleOk, prompts: prompts.length };
}

function speculativeTables(r) {
  const best = r.rows.reduce((a, b) => (b.measured > a.measured ? b : a));
  const agreeing = r.rows.filter((x) => x.agree <= 0.1).length;
  const pct = (x) => `${(x * 100).toFixed(0)} %`;
  const c = r.costs;
  return [
    '#### Speculative decoding on pycoder (self-speculation: the LoRA drafter = the first K layers + head with its adapter on; verifier = all 6 layers, adapter off)',
    '',
    `peftjs wasm, one thread, bf16 weights; greedy, ${r.decodeSteps} decode steps per generation, the ${r.prompts} oracle prompts in turn over ${r.rounds} round${r.rounds > 1 ? 's' : ''}; ` +
      `plain greedy and all 12 set-ups interleaved in a shuffled order each round. Plain greedy decode: ${r.plain.toFixed(0)} tokens/s (median). ` +
      `Lossless = generations equal to plain greedy token for token (checked before timing); plain greedy = the oracle's greedy_off: ${r.oracleOk ? 'yes' : '**no**'}.`,
    '',
    `Step costs, measured on their own (interleaved, medians): one plain step c₁ = ${c.c1.toFixed(3)} ms; a draft step ÷ c₁: ` +
      `${Object.entries(c.draft).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')}; verifying r rows ÷ c₁ for r = 1…9: ${c.verify.map((x) => x.toFixed(2)).join(', ')}; ` +
      `a drafter's forward over L new tokens ÷ c₁ (L = ${CATCHUP_L.join(', ')}, least squares): ${Object.entries(c.catchup).map(([k, v]) => `${k} ${v.a.toFixed(2)} + ${v.b.toFixed(3)}·L`).join(', ')}.`,
    '',
    table(
      ['drafter', 'cache', 'γ', 'lossless', 'acceptance (drafter top-1 agreement)', 'rounds without drafts', 'drafts / verification', 'tokens / verification', 'draft ÷ full step', 'catch-up ÷ full step', 'round ÷ full step', 'measured speed-up', 'predicted', '\\|measured ÷ predicted − 1\\|', "library's predicted"],
      r.rows.map((x) => [
        x.drafter,
        x.cache,
        x.gamma,
        x.losslessOk ? x.lossless : `**${x.lossless}**`,
        `${pct(x.acceptance)} (${pct(x.top1)})`,
        pct(x.plainShare),
        x.draftsPerVerification.toFixed(2),
        x.tokensPerRound.toFixed(2),
        x.draftCost.toFixed(2),
        x.catchup.toFixed(2),
        x.roundCost.toFixed(2),
        `**${x.measured.toFixed(2)}×**`,
        `${x.predicted.toFixed(2)}×`,
        `${pct(x.agree)}${x.agree > 0.1 ? ' (> 10 %)' : ''}`,
        `${x.libPredicted.toFixed(2)}×`,
      ]),
    ),
    '',
    `Acceptance = accepted ÷ (accepted + rejections), pooled over rounds. Tokens and drafts per verification pooled over rounds ` +
      `(a verification without drafts is a plain step). Catch-up (separate cache only) = per verification, the drafter's forwards over ` +
      `more than one token (the library's \`catchupSteps\` and \`catchupTokens\`: tokens it had not seen, as after plain rounds) at a + b·L, ` +
      `less the draft step each also is. Round ÷ full step = drafts × (draft ÷ c₁) + catch-up + verify(1 + drafts) ÷ c₁ from the ` +
      `step costs above; predicted = tokens per verification ÷ round cost. ` +
      `Measured = speculative ÷ plain decode tokens/s of the same round, median over rounds. The library's predicted is its own ` +
      `\`stats.speculative.predictedSpeedup\` (from its in-run cost model), median over rounds.`,
    '',
    `Best measured: ${best.id}, ${best.measured.toFixed(2)}× plain greedy${best.measured < 1.05 ? ' — speculation does not pay on this model here' : ''}. ` +
      `Measured and predicted agree within 10 % for ${agreeing} of ${r.rows.length} set-ups.`,
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------------- part 4

/**
 * WebGPU in this process (run as a child of the bench, see runWebgpu): pycoder on the adapter checked against the
 * oracle and against our wasm engine; on a hardware adapter also timed against wasm (pycoder and the synthetic
 * model, interleaved rounds); on a software adapter correctness only.
 */
async function webgpuHere({ lib, quick, log, report = () => {} }) {
  const gpu = await webgpuBackend(lib);
  if (!gpu.be) return { skipped: gpu.reason };
  log(`  WebGPU adapter: ${gpu.adapter}${gpu.software ? ' (software)' : ''}`);
  const out = { adapter: gpu.adapter, software: gpu.software };
  const wasm = await lib.createBackend('wasm', { threads: 1 });
  let lm;
  let wasmLm;
  try {
    lm = await lib.CausalLM.load(`${PYCODER}base`, { backend: gpu.be, weightDtype: 'bf16' });
    wasmLm = await lib.CausalLM.load(`${PYCODER}base`, { backend: wasm, weightDtype: 'bf16' });
    // A software adapter runs a step in seconds: check fewer tokens there (the same checks, smaller). Each finished
    // check is reported at once, so a run cut short by the time limit still says what it verified.
    const oracle = JSON.parse(readFileSync(`${ORACLE}oracle.json`, 'utf8'));
    const oracleT = readSafetensors(`${ORACLE}oracle.safetensors`);
    const prompts = gpu.software ? oracle.prompts.slice(0, 1) : oracle.prompts;
    const nTok = gpu.software ? 6 : 64;
    const sizes = gpu.software ? [16] : [16, 64, 256];
    const c = (out.check = { prompts: prompts.length, nTok, sizes, tokens: 0, total: 0, logits: undefined, cross: undefined, ok: false });
    for (const [i, p] of prompts.entries()) {
      c.logits = Math.max(c.logits ?? 0, relDiff(await lm.logits(p.ids), oracleT[`p${i}.logits_off`].data));
      report(out);
    }
    for (const p of prompts) {
      const g = await lm.generate(p.ids, { maxNewTokens: nTok, stop: [] });
      let k = 0;
      while (k < nTok && g.tokens[k] === p.greedy_off[k]) k++;
      c.tokens += k;
      c.total += nTok;
      report(out);
    }
    // Against our wasm engine on the timed prefill prompts (which ORT matches to ≤ TOL, part 1).
    for (const S of sizes) {
      const ids = pyIds(wasmLm.tokenizer, S);
      c.cross = Math.max(c.cross ?? 0, relDiff(await lm.logits(ids), await wasmLm.logits(ids)));
      report(out);
    }
    c.ok = c.tokens === c.total && c.logits <= TOL && c.cross <= TOL;
    const { tokens, total, logits, cross } = c;
    log(`  webgpu: oracle greedy ${tokens}/${total}, logits vs oracle ${logits.toExponential(1)}, vs wasm ${cross.toExponential(1)} → ${out.check.ok ? 'ok' : 'FAIL'}`);
    if (gpu.software) return out;
    // A hardware adapter: time it next to wasm (one thread, bf16 weights).
    const version = lib.VERSION ?? '0.1.0';
    const engines = [oursEngine(wasmLm, 'ours-bf16', `peftjs ${version} wasm, 1 thread, bf16 weights`, 'bf16', 'wasm'), oursEngine(lm, 'ours-webgpu', `peftjs ${version} webgpu, bf16 weights`, 'bf16', 'webgpu')];
    const prefillIds = Object.fromEntries(sizes.map((S) => [S, pyIds(lm.tokenizer, S)]));
    const prompt = pyIds(lm.tokenizer, 16);
    const tasks = [
      ...sizes.map((S) => ({ id: `prefill${S}`, run: async (e) => (S * 1000) / (await e.prefill(prefillIds[S])).ms })),
      { id: 'decode', run: async (e) => (await e.generate(prompt, 129)).decodeTokensPerSecond },
    ];
    const n = quick ? 3 : 10;
    const samples = await rounds(engines, tasks, { n, warmupMs: 1000, seed: 0x69b, log });
    out.timed = { rounds: n, sizes, rows: engines.map((e) => ({ label: e.label, ...Object.fromEntries(tasks.map((t) => [t.id, median(samples[e.id][t.id])])) })) };
    // The synthetic model on the GPU.
    const ck = syntheticCheckpoint(lib.writeSafetensors);
    const big = await lib.CausalLM.load(ck.files, { backend: gpu.be, weightDtype: 'bf16', maxLength: 512 });
    const V = QWEN25_05B.vocab_size;
    const ids = (k) => Array.from({ length: k }, (_, i) => (i * 7919 + 13) % V);
    await big.generate(ids(16), { maxNewTokens: 3, stop: [] });
    const dec = [];
    const pre = [];
    for (let r = 0; r < (quick ? 2 : 5); r++) {
      dec.push((await big.generate(ids(16), { maxNewTokens: 33, stop: [] })).stats.decodeTokensPerSecond);
      pre.push((await big.generate(ids(64), { maxNewTokens: 1, stop: [] })).stats.prefillTokensPerSecond);
    }
    big.dispose();
    out.synthetic = { decode: median(dec), prefill64: median(pre), weightBytes: ck.weightBytes };
    return out;
  } catch (e) {
    const reason = e.message.split('\n')[0];
    log(`  webgpu: ${reason}`);
    return { ...out, error: reason };
  } finally {
    lm?.dispose();
    wasmLm?.dispose();
  }
}

const CHILD_FLAG = '--webgpu-child';
const RESULT_MARK = '@@webgpu-result ';

/**
 * Runs the WebGPU part in a child process: a crash or a hang inside the GPU stack (Dawn, a software Vulkan) then
 * costs this part, not the whole bench. The child prints its result as one JSON line.
 */
async function runWebgpu({ quick, log }) {
  const limitS = quick ? 60 : 300;
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), CHILD_FLAG, ...(quick ? ['--quick'] : [])], { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => {
    stderr += d;
    for (const line of String(d).split('\n')) if (line.startsWith('  ')) log(line);
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, limitS * 1000);
  const code = await new Promise((resolve) => child.on('close', (c, sig) => resolve(c ?? sig)));
  clearTimeout(timer);
  // The last result line: the final one, or the checks finished before a time-out or a crash.
  const line = stdout.split('\n').filter((l) => l.startsWith(RESULT_MARK)).at(-1);
  const got = line ? JSON.parse(line.slice(RESULT_MARK.length)) : {};
  if (got.final) return got;
  const last = stderr.split('\n').filter((l) => l.trim() && !/XDG_RUNTIME_DIR/.test(l)).at(-1) ?? '';
  return { ...got, error: timedOut ? `the run did not finish within ${limitS} s (the checks it finished are shown)` : `the run crashed (exit ${code}): ${last.trim()}` };
}

function webgpuTables(r) {
  const head = '#### WebGPU';
  if (r.skipped) return `${head}\n\nSkipped: ${r.skipped}.`;
  const adapter = r.adapter ? `Adapter: ${r.adapter}${r.software ? ' — a **software** adapter (CPU emulation): correctness only, timings would say nothing about a GPU' : ''}.` : '';
  const parts = [head, ''];
  const c = r.check;
  if (r.error && (!c || (c.logits === undefined && !c.total))) return [...parts, `${adapter} Not run: ${r.error}.`.trim()].join('\n');
  parts.push(adapter, '');
  if (r.error) parts.push(`Cut short: ${r.error}.`, '');
  const e1 = (x) => (x === undefined ? '—' : x.toExponential(1));
  parts.push(
    table(
      ['check (pycoder, bf16 weights, on the adapter)', 'result'],
      [
        [`greedy tokens = oracle (${c.prompts} prompt${c.prompts > 1 ? 's' : ''} × ${c.nTok})`, c.total ? `${c.tokens}/${c.total}` : '—'],
        [`logits vs oracle, ${c.prompts} prompt${c.prompts > 1 ? 's' : ''} (max \\|Δ\\| ÷ max \\|logit\\|)`, e1(c.logits)],
        [`prefill logits vs wasm, S ${c.sizes.join('/')}`, e1(c.cross)],
        ['ok', c.ok ? 'yes' : r.error ? 'incomplete' : '**FAIL**'],
      ],
    ),
  );
  if (r.timed) {
    const cols = [...r.timed.sizes.map((S) => `prefill S=${S}`), 'decode (128 after 16)'];
    parts.push('', `Tokens/s, ${r.timed.rounds} interleaved rounds, medians:`, '', table(['engine', ...cols], r.timed.rows.map((x) => [x.label, ...['prefill16', 'prefill64', 'prefill256', 'decode'].map((k) => Math.round(x[k]).toLocaleString('en-US'))])));
  }
  if (r.synthetic) parts.push('', `Synthetic Qwen2.5-0.5B shapes on the adapter: decode ${r.synthetic.decode.toFixed(1)} tokens/s, prefill S=64 ${r.synthetic.prefill64.toFixed(0)} tokens/s.`);
  return parts.join('\n');
}

// ---------------------------------------------------------------------------------------------------- run

/** Runs the parts asked for; each part's result, or `{ error }` for a part that threw. */
export async function runModel({ quick = false, parts = PARTS, log = console.error } = {}) {
  const { lib, error } = await loadLib();
  if (!lib) return { error };
  const started = Date.now();
  const load0 = os.loadavg();
  const out = { quick, parts, load0 };
  const runners = { pycoder: runPycoder, synthetic: runSynthetic, speculative: runSpeculative, webgpu: runWebgpu };
  for (const p of parts) {
    log(`-- ${p}`);
    const t0 = Date.now();
    try {
      out[p] = await runners[p]({ lib, quick, log });
    } catch (e) {
      log(e.stack);
      out[p] = { error: e.message.split('\n')[0] };
    }
    log(`-- ${p}: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
  out.load1 = os.loadavg();
  out.seconds = (Date.now() - started) / 1000;
  return out;
}

export function modelTables(r) {
  if (r.error) return `#### Language models\n\nNot measured: ${r.error}.`;
  const render = { pycoder: pycoderTables, synthetic: syntheticTables, speculative: speculativeTables, webgpu: webgpuTables };
  const la = (l) => l.map((x) => x.toFixed(1)).join(' / ');
  return [
    `Load average (1 / 5 / 15 min) at start ${la(r.load0)}, at end ${la(r.load1)} on ${os.cpus().length} logical cores: the machine is shared, so absolute figures move with other work; ratios are paired per round.` +
      (r.quick ? ' **--quick run: few rounds, not for the README.**' : ''),
    ...r.parts.map((p) => (r[p].error && p !== 'webgpu' ? `#### ${p}\n\nFailed: ${r[p].error}.` : render[p](r[p]))),
  ].join('\n\n');
}

/** True when every correctness check that ran passed. */
export function modelOk(r) {
  if (r.error) return false;
  const g = r.webgpu?.check;
  // WebGPU: a check that finished and failed counts; one cut short by the time limit does not.
  const gpuBad = g && (g.tokens < g.total || g.logits > TOL || g.cross > TOL);
  const bad = [r.pycoder?.check && !r.pycoder.check.ok, r.speculative?.rows?.some((x) => !x.losslessOk) || r.speculative?.oracleOk === false, gpuBad, ...r.parts.map((p) => Boolean(r[p]?.error) && p !== 'webgpu')];
  return !bad.some(Boolean);
}

function commit() {
  try {
    const dir = fileURLToPath(ROOT);
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: dir, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: dir, encoding: 'utf8' }).trim();
    return `${sha}${dirty ? ' (+ uncommitted changes)' : ''}`;
  } catch {
    return 'unknown';
  }
}

/**
 * Writes results-model.md: date, commit, machine, versions and every table of this run. A --quick run writes
 * .scratch/results-model-quick.md instead (git-ignored), so a smoke run never replaces the figures of a full one.
 */
export function writeModelResults(r, md) {
  const head = [
    '# Language-model benchmark (bench/model.mjs)',
    '',
    `Written by one run of \`node model.mjs${r.quick ? ' --quick' : ''}\` (or \`npm run bench\`) on ${new Date().toISOString()}, ${Math.round(r.seconds ?? 0)} s.`,
    '',
    `- commit: ${commit()}`,
    `- machine: ${machine()}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM`,
    `- peer: onnxruntime-web ${pkgVersion('onnxruntime-web')} (WASM EP)`,
    '',
  ].join('\n');
  const file = new URL(r.quick ? './.scratch/results-model-quick.md' : './results-model.md', import.meta.url);
  mkdirSync(new URL('.', file), { recursive: true });
  writeFileSync(file, `${head}\n${md}\n`);
  return fileURLToPath(file);
}

if (import.meta.url === `file://${process.argv[1]}` && process.argv.includes(CHILD_FLAG)) {
  const { lib, error } = await loadLib();
  const report = (r) => console.log(`${RESULT_MARK}${JSON.stringify(r)}`);
  const r = lib ? await webgpuHere({ lib, quick: process.argv.includes('--quick'), log: console.error, report }) : { error };
  report({ ...r, final: true });
  process.exit(0);
} else if (import.meta.url === `file://${process.argv[1]}`) {
  const argv = process.argv.slice(2);
  const quick = argv.includes('--quick');
  const i = argv.findIndex((a) => a === '--part' || a.startsWith('--part='));
  const parts = i < 0 ? PARTS : (argv[i].includes('=') ? argv[i].split('=')[1] : argv[i + 1]).split(',');
  const unknown = parts.filter((p) => !PARTS.includes(p));
  if (unknown.length) {
    console.error(`unknown --part ${unknown.join(',')}: expected some of ${PARTS.join(', ')}`);
    process.exit(2);
  }
  const r = await runModel({ quick, parts });
  const md = modelTables(r);
  console.log(`\n${md}`);
  console.error(`wrote ${writeModelResults(r, md)}`);
  process.exit(modelOk(r) ? 0 : 1); // Dawn (webgpu) keeps the event loop alive
}

