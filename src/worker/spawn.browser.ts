import type { WorkerLike } from './connection.js';

/**
 * The browser twin of spawn.ts: a module Web Worker running dist/worker-script.browser.js (beside this bundle). The
 * `new Worker(new URL('…', import.meta.url))` form is the one webpack 5, Vite and Parcel recognise and bundle.
 */
export async function spawnWorker(): Promise<WorkerLike> {
  return new Worker(new URL('./worker-script.browser.js', import.meta.url), { type: 'module' }) as unknown as WorkerLike;
}
