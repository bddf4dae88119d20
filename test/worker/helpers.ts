// The worker script built from src/ (as tsup builds dist/worker-script.js, with the library bundled in), so these
// tests run the sources without `npm run build`.
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { build } from 'esbuild';

export const ROOT = resolve(import.meta.dirname, '../..');
export const PYCODER = resolve(ROOT, 'models/pycoder');

let script: Promise<URL> | undefined;

/** Builds src/worker/script.ts once per test file, into test/artifacts/worker/ (gitignored; rebuilt every run). */
export function workerScript(): Promise<URL> {
  script ??= (async () => {
    const dir = resolve(ROOT, 'test/artifacts/worker');
    mkdirSync(dir, { recursive: true });
    // One file per vitest pool: files running in parallel never share one, and each run overwrites its own.
    const outfile = resolve(dir, `worker-script.${process.env.VITEST_POOL_ID ?? '0'}.mjs`);
    await build({
      entryPoints: [resolve(ROOT, 'src/worker/script.ts')],
      bundle: true,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      outfile,
      external: ['zod', '@huggingface/tokenizers', 'webgpu'],
      logLevel: 'error',
    });
    return pathToFileURL(outfile);
  })();
  return script;
}

/** A worker_threads Worker running serveLM() from the sources. */
export async function sourceWorker(): Promise<Worker> {
  return new Worker(await workerScript());
}

export interface Oracle {
  n_new: number;
  prompts: { text: string; ids: number[]; greedy_on: number[]; greedy_off: number[]; greedy_on_text: string; greedy_off_text: string }[];
}
