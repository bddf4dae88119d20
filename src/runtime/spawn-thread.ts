import { THREAD_BODY } from './thread-body.js';

/** A started kernel worker: `terminate()` ends it. */
export interface ThreadHandle {
  terminate(): void;
}

/**
 * Starts one kernel worker (thread-body.ts) with `data` and resolves once it is 'ready'. Node, Deno and Bun:
 * node:worker_threads from source text (`eval`), `unref`'d so an idle pool never keeps the process alive (a Web Worker
 * blocked in Atomics.wait would, in Deno and Bun). spawn-thread.browser.ts is the browser twin (Web Worker, Blob URL).
 */
export async function spawnThread(data: unknown): Promise<ThreadHandle> {
  const { Worker } = await import('node:worker_threads');
  const w = new Worker(`const { parentPort, workerData } = require('node:worker_threads');\n(${THREAD_BODY})(workerData, (m) => parentPort.postMessage(m));`, {
    eval: true,
    workerData: data,
  });
  await new Promise<void>((resolve, reject) => {
    w.once('message', () => resolve());
    w.once('error', reject);
    w.once('exit', (code) => reject(new Error(`kernel worker exited with code ${code} before it was ready`)));
  });
  w.removeAllListeners('exit');
  w.removeAllListeners('error');
  w.on('error', () => {}); // a later crash must not take the process down; the caller sees the job fail
  w.unref();
  return { terminate: () => void w.terminate() };
}

/** Cores this process may use (Node ≥ 18.14: os.availableParallelism; Deno/Bun: navigator.hardwareConcurrency). */
export async function availableCores(): Promise<number> {
  const nav = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator;
  if (nav?.hardwareConcurrency) return nav.hardwareConcurrency;
  const os = await import('node:os');
  return os.availableParallelism?.() ?? os.cpus().length;
}
