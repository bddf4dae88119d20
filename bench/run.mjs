// Runs every bench question (or `--only gemm,quant,routes,gemv,verify,flip,lora,threads,relaxed,load,gpu,model`), prints markdown tables the README can take as they
// are, and writes the same to results.md (`model` also writes its own results-model.md). `--quick` runs a reduced set for
// a smoke test (not for the README).
// From the repo root: `npm run bench` (builds the library, installs the peers from bench/package-lock.json).
process.env.VK_ICD_FILENAMES ??= '/usr/lib/chromium/vk_swiftshader_icd.json'; // before Dawn starts: see webgpu.mjs
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { args, machine, pkgVersion } from './lib/common.mjs';
import { gemmTables, runGemm } from './gemm.mjs';
import { gpuTables, runGpu } from './webgpu.mjs';
import { loadTables, runLoad } from './load.mjs';
import { modelTables, runModel, writeModelResults } from './model.mjs';
import { quantTables, runQuant } from './quant.mjs';
import { routesTables, runRoutes } from './routes.mjs';

/** A script that prints its own markdown, run as a child (its own engine and thread pool), under a heading. */
function child(title, cmd, argv, env = {}) {
  return async ({ quick }) => {
    const { execFileSync } = await import('node:child_process');
    const { existsSync } = await import('node:fs');
    const bin = cmd.startsWith('.') ? fileURLToPath(new URL(cmd, import.meta.url)) : cmd;
    if (cmd.startsWith('.') && !existsSync(bin)) return `#### ${title}\n\nNot measured: ${bin} is missing (run \`npm ci\` in the repo root).`;
    const out = execFileSync(bin, [...argv, ...(quick ? ['--quick'] : [])], {
      cwd: fileURLToPath(new URL('.', import.meta.url)),
      env: { ...process.env, ...env },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      maxBuffer: 1 << 24,
    });
    return `#### ${title}\n\n${out.trim()}`;
  };
}

const QUESTIONS = {
  gemm: async (o) => gemmTables(await runGemm(o)),
  quant: async (o) => quantTables(await runQuant(o)),
  routes: async (o) => routesTables(await runRoutes(o)),
  gemv: child('Decode GEMV against a plain wasm read loop', process.execPath, ['gemv-bandwidth.mjs']),
  verify: child('Scoring m tokens against one decode step (speculative verification, per layer)', process.execPath, ['verify.mjs']),
  flip: child('Flipping an adapter at model scale (pycoder, 42 LoRA layers)', process.execPath, ['flip.mjs']),
  lora: child('What an adapter costs at model scale, switched on (decode, adapter on ÷ off)', process.execPath, ['lora-cost.mjs']),
  threads: child('Threads: the wasm linear with every core against one thread', process.execPath, ['threads.mjs']),
  relaxed: child('Relaxed SIMD against SIMD128 (Deno: Node 20 has no relaxed SIMD)', '../node_modules/.bin/deno', ['run', '-A', 'relaxed.mjs'], { DENO_NO_UPDATE_CHECK: '1' }),
  load: async (o) => loadTables(await runLoad(o)),
  gpu: async (o) => gpuTables(await runGpu(o)),
  model: async (o) => {
    const r = await runModel(o);
    const md = modelTables(r);
    writeModelResults(r, md);
    return md;
  },
};

const a = args();
const only = a.only ?? Object.keys(QUESTIONS);
const unknown = only.filter((q) => !(q in QUESTIONS));
if (unknown.length) {
  console.error(`unknown --only ${unknown.join(',')}: expected one of ${Object.keys(QUESTIONS).join(', ')}`);
  process.exit(2);
}

const started = Date.now();
const sections = [
  `Machine: ${machine()}. Peers: @tensorflow/tfjs-core ${pkgVersion('@tensorflow/tfjs-core')} + ` +
    `@tensorflow/tfjs-backend-wasm ${pkgVersion('@tensorflow/tfjs-backend-wasm')}, onnxruntime-web ${pkgVersion('onnxruntime-web')}.` +
    (a.quick ? ' **--quick run: reduced set, not for the README.**' : ''),
];
for (const q of only) {
  console.error(`\n== ${q} ==`);
  const t0 = Date.now();
  sections.push(await QUESTIONS[q]({ quick: a.quick }));
  console.error(`== ${q}: ${((Date.now() - t0) / 1000).toFixed(0)} s ==`);
}
const md = `${sections.join('\n\n')}\n`;
console.log(`\n${md}`);
writeFileSync(new URL('./results.md', import.meta.url), `<!-- written by bench/run.mjs ${new Date().toISOString()} (${only.join(', ')}; ${((Date.now() - started) / 1000).toFixed(0)} s) -->\n\n${md}`);
console.error(`wrote bench/results.md`);
const { writeCharts } = await import('../scripts/bench-charts.mjs');
console.error(`wrote docs/bench/: ${writeCharts(md, new URL('../docs/bench', import.meta.url).pathname).join(', ')}`);
const { benchDocs } = await import('../scripts/bench-docs.mjs');
writeFileSync(new URL('../docs/benchmarks.md', import.meta.url), benchDocs());
console.error('wrote docs/benchmarks.md');
process.exit(0); // Dawn (webgpu) keeps the event loop alive
