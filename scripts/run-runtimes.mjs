// Runs the smoke tests of the built package outside Node: Deno (`deno test`) and Bun (`bun test`), both from
// npm dev-dependencies, so `npm test` needs nothing but Node and npm. Exits non-zero if either fails.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const env = { ...process.env, DENO_NO_UPDATE_CHECK: '1', NO_COLOR: '1' };
const runs = [
  ['deno', ['test', '--allow-read', '--allow-env', 'test/deno/smoke.deno.ts']],
  // Deno 2 has relaxed SIMD: the kernels of wasm/peftjs-relaxed.wasm against float64 (Node 20 cannot run them).
  ['deno', ['test', '--allow-read', '--allow-env', 'test/deno/relaxed.deno.ts']],
  ['bun', ['test', './test/runtimes/bun-smoke.test.mjs']],
];
let failed = 0;
for (const [bin, args] of runs) {
  const exe = `node_modules/.bin/${bin}`;
  if (!existsSync(exe)) {
    console.error(`✖ ${bin} is missing: run npm ci (it is an npm dev-dependency)`);
    failed++;
    continue;
  }
  console.log(`\n▶ ${bin} ${args.join(' ')}`);
  const r = spawnSync(exe, args, { stdio: 'inherit', env });
  if (r.status !== 0) failed++;
}
console.log(`\n${runs.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
