// The long fuzz campaign: every target of test/fuzz/targets.ts (safetensors, torchzip, pickle, config, mlx, and http: a
// real 127.0.0.1 server answering with scripted statuses, encodings, lengths, ranges and mutated bodies) with fresh seeds, FUZZ_RUNS inputs each
// (default 20,000 each: 120,000 in all), failing inputs saved under test/fixtures/fuzz-regressions/.
//   npm run fuzz                      # one campaign, a fresh seed
//   FUZZ_RUNS=2000 FUZZ_ROUNDS=5 npm run fuzz
import { spawnSync } from 'node:child_process';

const rounds = Number(process.env.FUZZ_ROUNDS ?? 1);
let failed = 0;
for (let i = 0; i < rounds; i++) {
  const seed = process.env.FUZZ_SEED ?? String(Math.floor(Math.random() * 2 ** 31));
  console.log(`fuzz round ${i + 1}/${rounds}: seed ${seed}, ${process.env.FUZZ_RUNS ?? 20000} runs per target`);
  const r = spawnSync('npx', ['vitest', 'run', 'test/fuzz', '--reporter=dot'], {
    stdio: 'inherit',
    env: { ...process.env, FUZZ_SEED: seed, FUZZ_RUNS: process.env.FUZZ_RUNS ?? '20000', FUZZ_SAVE: '1' },
  });
  if (r.status !== 0) failed++;
}
if (failed) {
  console.error(`${failed} round(s) found failures: inputs saved in test/fixtures/fuzz-regressions/ (commit them once fixed)`);
  process.exit(1);
}
