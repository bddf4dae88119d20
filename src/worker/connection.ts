import { ModelError, WorkerError } from '../errors.js';
import { PROTOCOL, fromWireError, isPeftMessage, type Reply, type Request } from './protocol.js';

/**
 * A worker as the main thread holds it: a Web Worker (browsers, Deno, Bun: `addEventListener`) or a worker_threads
 * Worker (Node: `on`, `ref`/`unref`, `terminate()` resolving with the exit code).
 */
export interface WorkerLike {
  // `any[]`: Node's worker_threads and the DOM each have their own Transferable type, and neither accepts the other's.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  postMessage(message: unknown, transfer?: any[]): void;
  terminate(): unknown;
  on?(event: string, fn: (...args: never[]) => void): unknown;
  addEventListener?(event: string, fn: (e: never) => void): void;
  ref?(): void;
  unref?(): void;
}

/** What a caller hears while a request runs. */
export interface CallHandlers {
  signal?: AbortSignal;
  onProgress?: (p: never) => void;
  onChunk?: (c: never) => void;
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
  h: CallHandlers;
  /** The caller's stack, put before the worker's in a re-created error. */
  stack?: string;
  unlisten?: () => void;
}

type Body = Request extends infer R ? (R extends unknown ? Omit<R, 'peftjs' | 'id'> : never) : never;

/** One in-flight request: its result, and `cancel()` (the caller stopped listening: abort it, drop its answers). */
export interface Call<T> {
  readonly result: Promise<T>;
  cancel(): void;
}

/**
 * The main side of one worker: request ids, the handshake, answers routed to their caller, errors re-created, and
 * the worker's end (crash, exit, `terminate()`) failing every call still waiting. A worker it started itself is
 * `unref`'d while nothing is pending, so an idle model never keeps a Node process alive.
 */
export class Connection {
  readonly worker: WorkerLike;
  /** Models loaded over this connection and not disposed (an owned worker ends with its last one). */
  models = 0;
  readonly #owned: boolean;
  readonly #pending = new Map<number, Pending>();
  #next = 1;
  #closed?: WorkerError;
  readonly #ready: Promise<void>;
  #readyDone = false;
  #resolveReady!: () => void;
  #rejectReady!: (e: unknown) => void;

  constructor(worker: WorkerLike, opts: { owned: boolean; timeoutMs?: number }) {
    this.worker = worker;
    this.#owned = opts.owned;
    this.#ready = new Promise<void>((ok, fail) => {
      this.#resolveReady = ok;
      this.#rejectReady = fail;
    });
    this.#ready.catch(() => {}); // the rejection reaches callers through #closed
    const timeoutMs = opts.timeoutMs ?? 60_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (Number.isFinite(timeoutMs) && timeoutMs > 0) {
      timer = setTimeout(
        () => this.#fail(new WorkerError('no_handshake', 'the worker did not answer', { expected: `a worker running serveLM() to answer within ${timeoutMs} ms`, got: 'no answer' })),
        timeoutMs,
      );
    }
    this.#ready.then(
      () => clearTimeout(timer),
      () => clearTimeout(timer),
    );

    const w = worker;
    if (typeof w.on === 'function') {
      // Node worker_threads: an 'error' listener must exist, or the worker's uncaught error kills this process.
      w.on('message', ((m: unknown) => this.#onMessage(m)) as never);
      w.on('error', ((e: unknown) => this.#crashed(e)) as never);
      w.on('messageerror', ((e: unknown) => this.#crashed(e)) as never);
      w.on('exit', ((code: number) => this.#fail(new WorkerError('terminated', 'the worker exited', { got: `exit code ${code}` }))) as never);
    } else if (typeof w.addEventListener === 'function') {
      w.addEventListener('message', ((e: MessageEvent) => this.#onMessage(e.data)) as never);
      w.addEventListener('error', ((e: ErrorEvent) => {
        e.preventDefault?.();
        this.#crashed(e.error ?? e.message ?? e);
        this.#terminateQuietly();
      }) as never);
      w.addEventListener('messageerror', ((e: unknown) => this.#crashed(e)) as never);
    } else {
      throw new ModelError('bad_option', 'not a worker', { key: 'worker', expected: 'a Worker (web or worker_threads) running serveLM()', got: typeof w });
    }
    this.#refresh();
    try {
      w.postMessage({ peftjs: PROTOCOL, type: 'hello', id: 0 });
    } catch (e) {
      this.#crashed(e);
    }
  }

  /** This connection started the worker (it ends with the last model in it). */
  get owned(): boolean {
    return this.#owned;
  }

  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /** Sends a request once the worker is ready; its answers go to `h`. */
  call<T>(body: Body, h: CallHandlers = {}, transfer: Transferable[] = []): Call<T> {
    const stack = new Error().stack;
    let id = 0;
    let cancelled = false;
    const result = new Promise<T>((resolve, reject) => {
      const start = () => {
        if (this.#closed) return reject(this.#closed);
        if (cancelled) return;
        id = this.#next++;
        const p: Pending = { resolve: resolve as (v: unknown) => void, reject, h, stack };
        this.#pending.set(id, p);
        const signal = h.signal;
        try {
          // Already aborted: the worker starts with an aborted signal, so the call fails as it would on the main thread.
          this.worker.postMessage({ ...body, peftjs: PROTOCOL, id, ...(signal?.aborted ? { aborted: true } : {}) }, transfer);
        } catch (e) {
          this.#pending.delete(id);
          return reject(
            new ModelError('bad_option', 'a value that cannot be sent to a worker', { expected: 'strings, numbers, arrays, plain objects, typed arrays, Blobs', got: body.type, detail: e instanceof Error ? e.message : String(e), cause: e }),
          );
        }
        if (signal && !signal.aborted) {
          const abort = () => this.#post({ peftjs: PROTOCOL, type: 'abort', id: 0, target: id });
          signal.addEventListener('abort', abort, { once: true });
          p.unlisten = () => signal.removeEventListener('abort', abort);
        }
        this.#refresh();
      };
      if (this.#readyDone) start();
      else this.#ready.then(start, () => reject(this.#closed));
    });
    return {
      result,
      cancel: () => {
        cancelled = true;
        const p = this.#pending.get(id);
        if (!p) return;
        this.#settle(id);
        this.#post({ peftjs: PROTOCOL, type: 'abort', id: 0, target: id });
      },
    };
  }

  /** Ends the worker: every waiting call fails with WorkerError 'terminated'. */
  async terminate(): Promise<void> {
    this.#fail(new WorkerError('terminated', 'the worker was terminated', { detail: 'terminate() was called' }));
    await this.worker.terminate();
  }

  #post(m: Request): void {
    if (this.#closed) return;
    try {
      this.worker.postMessage(m);
    } catch {
      // an abort that cannot be sent: the worker is going away
    }
  }

  #settle(id: number): Pending | undefined {
    const p = this.#pending.get(id);
    if (!p) return undefined;
    this.#pending.delete(id);
    p.unlisten?.();
    this.#refresh();
    return p;
  }

  #onMessage(raw: unknown): void {
    if (!isPeftMessage(raw)) return;
    const m = raw as Reply;
    if (m.type === 'ready') {
      if (raw.peftjs !== PROTOCOL) this.#fail(new WorkerError('bad_message', 'the worker speaks another peftjs protocol version', { expected: PROTOCOL, got: raw.peftjs }));
      else if (!this.#readyDone) {
        this.#readyDone = true;
        this.#resolveReady();
        this.#refresh();
      }
      return;
    }
    const p = this.#pending.get(m.id);
    if (!p) return; // a cancelled call's late answer
    switch (m.type) {
      case 'progress':
      case 'chunk':
        try {
          if (m.type === 'progress') p.h.onProgress?.(m.progress as never);
          else p.h.onChunk?.(m.chunk as never);
        } catch (e) {
          // A throwing callback ends its call, as it would on the main thread.
          this.#settle(m.id)?.reject(e);
          this.#post({ peftjs: PROTOCOL, type: 'abort', id: 0, target: m.id });
        }
        return;
      case 'done':
        this.#settle(m.id)?.resolve(m.value);
        return;
      case 'error':
        this.#settle(m.id)?.reject(fromWireError(m.error, p.stack));
        return;
    }
  }

  #crashed(e: unknown): void {
    const msg = e instanceof Error ? e.message : typeof e === 'string' ? e : 'an error outside any request';
    this.#fail(new WorkerError('crashed', 'the worker failed', { detail: msg, cause: e }));
  }

  #terminateQuietly(): void {
    try {
      void Promise.resolve(this.worker.terminate()).catch(() => {});
    } catch {
      // already gone
    }
  }

  #fail(e: WorkerError): void {
    if (this.#closed) return;
    this.#closed = e;
    this.#rejectReady(e);
    const all = [...this.#pending.keys()];
    for (const id of all) this.#settle(id)?.reject(e);
    this.#refresh();
  }

  /** An owned Node worker holds the process open only while a call is pending (or the handshake is). */
  #refresh(): void {
    if (!this.#owned) return;
    const busy = !this.#closed && (this.#pending.size > 0 || !this.#readyDone);
    if (busy) this.worker.ref?.();
    else this.worker.unref?.();
  }
}
