// Runs test/gpu/*.test.ts (bundled with the vitest shim) one file after another; prints one line per test and a
// JSON summary. Usage: node run-tests.js [name filter]
import { beginFile, runSuite, type Result } from './vitest-shim.js';

const FILES: Record<string, () => Promise<unknown>> = {
  golden: () => import('../../test/gpu/golden.test.js'),
  kernels: () => import('../../test/gpu/kernels.test.js'),
  'fast-kernels': () => import('../../test/gpu/fast-kernels.test.js'),
  layers: () => import('../../test/gpu/layers.test.js'),
  routes: () => import('../../test/gpu/routes.test.js'),
  transformer: () => import('../../test/gpu/transformer.test.js'),
  'causal-lm': () => import('../../test/gpu/causal-lm.test.js'),
  lifecycle: () => import('../../test/gpu/lifecycle.test.js'),
  'adapter-lifetime': () => import('../../test/gpu/adapter-lifetime.test.js'),
  'gc-lifetime': () => import('../../test/gpu/gc-lifetime.test.js'),
};
const filter = process.argv[2];
const all: Result[] = [];
const perFile: Record<string, { pass: number; fail: number; skip: number; ms: number }> = {};
for (const [name, load] of Object.entries(FILES)) {
  if (filter && !name.includes(filter)) continue;
  const suite = beginFile(name);
  const t0 = performance.now();
  const res: Result[] = [];
  try {
    await load();
    await runSuite(suite, [], { before: [], after: [] }, res, (r) => console.log(`${r.skipped ? 'SKIP' : r.ok ? 'ok  ' : 'FAIL'} ${r.ms.toFixed(0).padStart(6)} ms  ${name} > ${r.name}${r.error ? `\n      ${r.error.replace(/\n/g, '\n      ')}` : ''}`));
  } catch (e) {
    res.push({ name: `${name} (load)`, ok: false, ms: 0, error: String((e as Error).stack ?? e) });
    console.log(`FAIL load ${name}: ${(e as Error).stack ?? e}`);
  }
  perFile[name] = { pass: res.filter((r) => r.ok && !r.skipped).length, fail: res.filter((r) => !r.ok).length, skip: res.filter((r) => r.skipped).length, ms: Math.round(performance.now() - t0) };
  console.log(`== ${name}: ${JSON.stringify(perFile[name])}`);
  all.push(...res);
}
console.log(`SUMMARY ${JSON.stringify({ pass: all.filter((r) => r.ok && !r.skipped).length, fail: all.filter((r) => !r.ok).length, skip: all.filter((r) => r.skipped).length, perFile })}`);
process.exit(all.some((r) => !r.ok) ? 1 : 0);
