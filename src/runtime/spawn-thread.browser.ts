import { THREAD_BODY } from './thread-body.js';

/** A started kernel worker: `terminate()` ends it. */
export interface ThreadHandle {
  terminate(): void;
}

/** Browser twin of spawn-thread.ts: a Web Worker from a Blob URL (no file beside the bundle, no node: import). */
export async function spawnThread(data: unknown): Promise<ThreadHandle> {
  const url = URL.createObjectURL(new Blob([`self.onmessage = (e) => { self.onmessage = null; (${THREAD_BODY})(e.data, (m) => self.postMessage(m)); };`], { type: 'text/javascript' }));
  const w = new Worker(url);
  try {
    await new Promise<void>((resolve, reject) => {
      w.onmessage = () => resolve();
      w.onerror = (e) => reject(new Error(`kernel worker failed to start: ${e.message}`));
      w.postMessage(data);
    });
  } finally {
    URL.revokeObjectURL(url);
  }
  return { terminate: () => w.terminate() };
}

/** Cores the page may use. */
export async function availableCores(): Promise<number> {
  return (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 1;
}
