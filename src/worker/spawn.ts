import type { WorkerLike } from './connection.js';

/**
 * The worker a `WorkerLM` starts when it is given none: dist/worker-script.js, beside the bundle this code is in.
 * Deno and Bun have the Web Worker API (module workers); Node has worker_threads, reached by a dynamic import so that
 * browser bundles never see it (spawn.browser.ts is the twin without it).
 */
export async function spawnWorker(): Promise<WorkerLike> {
  const url = new URL('./worker-script.js', import.meta.url);
  const Web = (globalThis as { Worker?: new (url: URL, opts: { type: 'module' }) => WorkerLike }).Worker;
  if (typeof Web === 'function') return new Web(url, { type: 'module' });
  const { Worker } = await import('node:worker_threads');
  return new Worker(url) as unknown as WorkerLike;
}
