import { WorkerError } from '../errors.js';

/**
 * The channel a worker answers on: `self` in a Web Worker (browsers, Deno, Bun), `parentPort` under Node's
 * worker_threads, or any MessagePort. Node's ports deliver the message itself to `on('message')`; web ones a
 * MessageEvent to `addEventListener`.
 */
export interface HostPort {
  postMessage(message: unknown, transfer?: Transferable[]): void;
  on?(type: 'message', fn: (data: unknown) => void): unknown;
  addEventListener?(type: 'message', fn: (e: MessageEvent) => void): void;
  start?(): void;
}

/**
 * The port of the worker this code runs in. Only a worker_threads worker needs `node:worker_threads`, reached by a
 * dynamic import so that browser bundles never see it (endpoint.browser.ts is the twin without it).
 */
export async function defaultHostPort(): Promise<HostPort> {
  const g = globalThis as { WorkerGlobalScope?: abstract new () => unknown; self?: unknown };
  if (typeof g.WorkerGlobalScope === 'function' && g.self instanceof g.WorkerGlobalScope) return g.self as HostPort;
  const wt = (await import('node:worker_threads').catch(() => undefined)) as { parentPort?: HostPort | null } | undefined;
  if (wt?.parentPort) return wt.parentPort;
  throw notAWorker();
}

export function notAWorker(): WorkerError {
  return new WorkerError('not_a_worker', 'serveLM() runs inside a worker', {
    expected: 'a Web Worker or a worker_threads Worker, or a MessagePort passed to serveLM(port)',
    got: 'the main thread',
  });
}
