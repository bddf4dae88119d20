import { WorkerError } from '../errors.js';
import type { HostPort } from './endpoint.js';

/** The browser twin of endpoint.ts (no `node:worker_threads`): a Web Worker's own scope. */
export type { HostPort };

export async function defaultHostPort(): Promise<HostPort> {
  const g = globalThis as { WorkerGlobalScope?: abstract new () => unknown; self?: unknown };
  if (typeof g.WorkerGlobalScope === 'function' && g.self instanceof g.WorkerGlobalScope) return g.self as HostPort;
  throw notAWorker();
}

export function notAWorker(): WorkerError {
  return new WorkerError('not_a_worker', 'serveLM() runs inside a worker', {
    expected: 'a Web Worker, or a MessagePort passed to serveLM(port)',
    got: 'the main thread',
  });
}
