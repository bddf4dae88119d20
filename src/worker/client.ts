import { IoError, ModelError, WorkerError } from '../errors.js';
import type { GenerateResult, StreamChunk } from '../models/causal-lm.js';
import type { DecoderConfig } from '../models/config.js';
import type { SamplingOptions } from '../generate/sampling.js';
import type { LoadLimits } from '../limits.js';
import { Connection, type CallHandlers, type WorkerLike } from './connection.js';
import type { ModelInfo, WireAdapter, WireGenerateOptions, WireSource, WorkerFile, WorkerSource } from './protocol.js';
import { spawnWorker } from './spawn.js';

/** An adapter to load into the worker's model: `LoRAContainer.load(source, { name })`, applied, then switched on or off. */
export interface WorkerAdapterSpec {
  /** The adapter's name on each layer (default: its spec's, `default`); names the adapter in later calls. */
  name?: string;
  source: WorkerSource;
  /** Default true. */
  enabled?: boolean;
  /** Default 'auto' (detected from adapter_config.json). */
  format?: 'auto' | 'peft' | 'mlx';
  /** The runtime multiplier k (effective scale k·α/r), as `container.scale`. Default 1. */
  scale?: number;
}

/** Progress of a load in the worker: the model's files (`file`), then each adapter's (`adapter`). */
export interface WorkerLoadProgress {
  loaded: number;
  total?: number;
  file?: string;
  /** Set while an adapter loads: its name. */
  adapter?: string;
}

/** `CausalLM.load` options that can cross to a worker, plus the adapters to put on the model. */
export interface WorkerLoadOptions {
  /** Created in the worker by name (default 'wasm'). */
  backend?: 'wasm' | 'js' | 'webgpu' | 'auto';
  weightDtype?: 'f32' | 'bf16';
  maxLength?: number;
  limits?: Partial<LoadLimits>;
  /** Loaded and applied in order; any failure fails the whole load (no half-adapted model). */
  adapters?: WorkerAdapterSpec[];
  onProgress?: (p: WorkerLoadProgress) => void;
  signal?: AbortSignal;
}

/** Where the model runs. */
export interface WorkerLMOptions {
  /**
   * A worker running `serveLM()` (a `new Worker(…)` of your own bundled worker file), or a `WorkerLM` whose worker
   * this model shares (needed for `draft.model`). Default: a new worker running peftjs's own worker script.
   */
  worker?: WorkerLike | WorkerLM;
  /** How long the worker may take to answer its first message (default 60 000 ms; Infinity = wait). */
  timeoutMs?: number;
}

/** `DraftSpec` for a model in a worker: the drafter is an adapter by name, or another WorkerLM in the same worker. */
export interface WorkerDraftSpec {
  adapter?: string | { readonly name: string };
  exitAfterLayers?: number;
  sharedCache?: boolean;
  /** A WorkerLM loaded into the same worker (`WorkerLM.load(src, {}, { worker: thisLM })`). */
  model?: WorkerLM;
  tokens?: number | 'auto';
  minProbability?: number;
}

/** `GenerateOptions` for a model in a worker (the same, with `draft.model` a WorkerLM). */
export interface WorkerGenerateOptions extends SamplingOptions {
  maxNewTokens?: number;
  stop?: ReadonlyArray<number | string> | number | string;
  /** Forwarded to the worker as a message: the generation stops at its next token with ModelError 'aborted'. */
  signal?: AbortSignal;
  draft?: WorkerDraftSpec;
}

export interface WorkerAdapterInfo {
  readonly name: string;
  readonly enabled: boolean;
  /** Modules the adapter reached. */
  readonly modules: number;
}

/**
 * A `CausalLM` that lives in a Web Worker (browsers, Deno, Bun) or a worker_threads Worker (Node), with the same
 * async API: `generate`, `stream`, `logits`, `encode`, adapters switched by name. The page or the event loop stays
 * free while the model runs. Requests travel as messages (protocol.ts); errors thrown in the worker come back as
 * the same PeftError subclass with the same `code` and facts; `signal`s are forwarded; logits arrive as a
 * transferred Float32Array (no copy).
 *
 * Sources must cross to the worker: URL or path strings (a relative URL in a page is taken relative to the page,
 * not to the worker script), `URL`s, or in-memory files (`Record`/`Map` of name → Uint8Array, ArrayBuffer or
 * Blob/File; copied), or a FileSystemDirectoryHandle.
 */
export class WorkerLM {
  readonly config: DecoderConfig;
  readonly maxLength: number;
  /** The backend the model runs on in the worker ('wasm', 'webgpu', 'js'). */
  readonly backend: string;
  readonly hasTokenizer: boolean;
  readonly #conn: Connection;
  readonly #id: number;
  #info: ModelInfo;
  #disposed = false;

  private constructor(conn: Connection, id: number, info: ModelInfo) {
    this.#conn = conn;
    this.#id = id;
    this.#info = info;
    this.config = info.config as unknown as DecoderConfig;
    this.maxLength = info.maxLength;
    this.backend = info.backend;
    this.hasTokenizer = info.hasTokenizer;
  }

  /**
   * Starts a worker (or uses `where.worker`), loads the model there with `CausalLM.load`, then loads and applies
   * each adapter. On failure the error is the one the worker threw, and a worker started for this load is ended.
   */
  static async load(source: WorkerSource, opts: WorkerLoadOptions = {}, where: WorkerLMOptions = {}): Promise<WorkerLM> {
    const wire = wireSource(source);
    const adapters = (opts.adapters ?? []).map(wireAdapter);
    let conn: Connection;
    let owned = false;
    if (where.worker instanceof WorkerLM) conn = where.worker.#conn;
    else if (where.worker) {
      // One connection per worker: two would both hear every answer, and their request ids would collide.
      let c = connections.get(where.worker);
      if (!c || c.closed) connections.set(where.worker, (c = new Connection(where.worker, { owned: false, timeoutMs: where.timeoutMs })));
      conn = c;
    }
    else {
      conn = new Connection(await spawnWorker(), { owned: true, timeoutMs: where.timeoutMs });
      owned = true;
    }
    if (conn.closed) throw new WorkerError('terminated', 'the worker was terminated', { where: 'WorkerLM.load' });
    conn.models++;
    try {
      const { model, info } = await conn.call<{ model: number; info: ModelInfo }>(
        { type: 'load', source: wire, options: { backend: opts.backend, weightDtype: opts.weightDtype, maxLength: opts.maxLength, limits: opts.limits as Record<string, number>, adapters } },
        { signal: opts.signal, onProgress: opts.onProgress as CallHandlers['onProgress'] },
      ).result;
      return new WorkerLM(conn, model, info);
    } catch (e) {
      conn.models--;
      if (owned) await conn.terminate().catch(() => {});
      throw e;
    }
  }

  /** The worker this model runs in. */
  get worker(): WorkerLike {
    return this.#conn.worker;
  }

  /** The adapters on the model, as the worker last reported them. */
  get adapters(): readonly WorkerAdapterInfo[] {
    return this.#info.adapters;
  }

  #call<T>(body: Parameters<Connection['call']>[0], h?: CallHandlers, transfer?: Transferable[]) {
    if (this.#disposed) {
      const e = new WorkerError('disposed', 'the model was disposed', { expected: 'a WorkerLM before dispose()', got: 'disposed' });
      return { result: Promise.reject(e) as Promise<T>, cancel() {} };
    }
    return this.#conn.call<T>(body, h, transfer);
  }

  /** Loads an adapter in the worker and applies it (`enabled` default true); the model is unchanged if that fails. */
  async addAdapter(spec: WorkerAdapterSpec, opts: { signal?: AbortSignal; onProgress?: (p: WorkerLoadProgress) => void; limits?: Partial<LoadLimits> } = {}): Promise<void> {
    this.#info = await this.#call<ModelInfo>(
      { type: 'adapter', model: this.#id, adapter: wireAdapter(spec), limits: opts.limits as Record<string, number> },
      { signal: opts.signal, onProgress: opts.onProgress as CallHandlers['onProgress'] },
    ).result;
  }

  /** `container.enabled = on` for the adapter of this name (ApplyError 'not_applied' for an unknown name). */
  async setAdapterEnabled(name: string, on: boolean): Promise<void> {
    this.#info = await this.#call<ModelInfo>({ type: 'enable', model: this.#id, on, adapter: name }).result;
  }

  /** `setLoRAEnabled(lm, on, opts)`: every LoRA layer (or only `adapter` on each). */
  async setLoRAEnabled(on: boolean, opts: { adapter?: string } = {}): Promise<void> {
    this.#info = await this.#call<ModelInfo>({ type: 'enable', model: this.#id, on, adapter: opts.adapter }).result;
  }

  #generateOptions(o: WorkerGenerateOptions): WireGenerateOptions {
    const { signal: _, draft, stop, ...rest } = o;
    const out: WireGenerateOptions = { ...rest };
    if (stop !== undefined) out.stop = Array.isArray(stop) ? [...stop] : (stop as number | string);
    if (draft) {
      const { adapter, model, ...d } = draft;
      out.draft = { ...d };
      if (adapter !== undefined) out.draft.adapter = typeof adapter === 'string' ? adapter : adapter.name;
      if (model !== undefined) {
        if (!(model instanceof WorkerLM) || model.#conn !== this.#conn) {
          throw new ModelError('bad_option', 'a drafter model must run in the same worker', {
            key: 'draft.model',
            expected: 'a WorkerLM loaded with { worker: thisModel }',
            got: model instanceof WorkerLM ? 'a WorkerLM in another worker' : ((model as object | null)?.constructor?.name ?? typeof model),
          });
        }
        if (model.#disposed) throw new WorkerError('disposed', 'the drafter model was disposed', { key: 'draft.model', got: 'disposed' });
        out.draft.model = model.#id;
      }
    }
    return out;
  }

  /** Generates up to `maxNewTokens` tokens, as `CausalLM.generate`. */
  async generate(prompt: string | readonly number[], opts: WorkerGenerateOptions = {}): Promise<GenerateResult> {
    const options = this.#generateOptions(opts);
    return this.#call<GenerateResult>({ type: 'generate', model: this.#id, prompt: typeof prompt === 'string' ? prompt : [...prompt], options, stream: false }, { signal: opts.signal }).result;
  }

  /**
   * Streams new tokens as the worker decodes them, as `CausalLM.stream` (chunks `{ token, text, stats }`; the return
   * value is the GenerateResult). Leaving the loop early aborts the generation in the worker.
   */
  async *stream(prompt: string | readonly number[], opts: WorkerGenerateOptions = {}): AsyncGenerator<StreamChunk, GenerateResult> {
    const options = this.#generateOptions(opts);
    const chunks: StreamChunk[] = [];
    let wake: (() => void) | undefined;
    let end: { ok: true; value: GenerateResult } | { ok: false; error: unknown } | undefined;
    const call = this.#call<GenerateResult>(
      { type: 'generate', model: this.#id, prompt: typeof prompt === 'string' ? prompt : [...prompt], options, stream: true },
      {
        signal: opts.signal,
        onChunk: ((c: StreamChunk) => {
          chunks.push(c);
          wake?.();
        }) as CallHandlers['onChunk'],
      },
    );
    call.result.then(
      (value) => {
        end = { ok: true, value };
        wake?.();
      },
      (error: unknown) => {
        end = { ok: false, error };
        wake?.();
      },
    );
    try {
      for (;;) {
        while (chunks.length) yield chunks.shift()!;
        if (end) {
          if (!end.ok) throw end.error;
          return end.value;
        }
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
      }
    } finally {
      if (!end) call.cancel();
    }
  }

  /** Logits of every position of a fresh sequence, `Float32Array [len, vocab]` (transferred from the worker). */
  async logits(ids: readonly number[] | Int32Array, opts: { layers?: number } = {}): Promise<Float32Array> {
    return this.#call<Float32Array>({ type: 'logits', model: this.#id, ids: Array.from(ids), layers: opts.layers }).result;
  }

  /** Token ids of a prompt (text needs the checkpoint's tokenizer). */
  async encode(prompt: string | readonly number[]): Promise<number[]> {
    if (typeof prompt !== 'string') return [...prompt];
    return this.#call<number[]>({ type: 'encode', model: this.#id, text: prompt }).result;
  }

  /** Text of token ids. */
  async decode(ids: readonly number[], opts: { skipSpecialTokens?: boolean } = {}): Promise<string> {
    return this.#call<string>({ type: 'decode', model: this.#id, ids: [...ids], skipSpecialTokens: opts.skipSpecialTokens }).result;
  }

  /**
   * Frees this model in the worker; later calls fail with WorkerError 'disposed'. A worker that `load` started
   * ends with the last model in it.
   */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    const r = this.#call<void>({ type: 'dispose', model: this.#id }).result;
    this.#disposed = true;
    this.#conn.models--;
    await r.catch((e: unknown) => {
      if (!(e instanceof WorkerError && e.code === 'terminated')) throw e;
    });
    if (this.#conn.models === 0 && this.#conn.owned) await this.#conn.terminate();
  }

  /** Ends the worker and every model in it; calls still waiting fail with WorkerError 'terminated'. */
  async terminate(): Promise<void> {
    await this.#conn.terminate();
  }

  toString(): string {
    return `WorkerLM(${this.#info.description})`;
  }
}

/** The connection to each worker a caller passed in. */
const connections = new WeakMap<WorkerLike, Connection>();

function isFile(v: unknown): v is WorkerFile {
  return v instanceof Uint8Array || v instanceof ArrayBuffer || (typeof Blob !== 'undefined' && v instanceof Blob);
}

/** A view of a larger buffer would clone the whole buffer: send just its bytes. */
function compact(v: WorkerFile): WorkerFile {
  return v instanceof Uint8Array && v.byteLength !== v.buffer.byteLength ? v.slice() : v;
}

/** `source` in a form the worker can receive, checked before anything is sent. */
export function wireSource(source: WorkerSource, where = 'source'): WireSource {
  if (typeof source === 'string' || source instanceof URL) {
    const s = String(source);
    // In a page, a relative URL means relative to the page (the worker's own base is its script).
    const page = (globalThis as { document?: { baseURI?: string } }).document?.baseURI;
    if (typeof source === 'string' && page && !/^[a-z][a-z0-9+.-]*:/i.test(s)) return new URL(s, page).href;
    return s;
  }
  const isHandle = typeof FileSystemDirectoryHandle !== 'undefined' && source instanceof FileSystemDirectoryHandle;
  if (isHandle) return source;
  const entries = source instanceof Map ? [...source] : typeof source === 'object' && source !== null && [Object.prototype, null].includes(Object.getPrototypeOf(source)) ? Object.entries(source) : undefined;
  if (!entries) {
    throw new IoError('unsupported_source', 'a worker cannot receive this source', {
      key: where,
      expected: 'a URL or path string, a URL, a Record/Map of in-memory files, or a FileSystemDirectoryHandle',
      got: (source as object | null)?.constructor?.name ?? typeof source,
    });
  }
  const out = new Map<string, WorkerFile>();
  for (const [name, v] of entries) {
    if (!isFile(v)) {
      throw new IoError('unsupported_source', 'an in-memory file a worker cannot receive', {
        file: name,
        key: where,
        expected: 'Uint8Array, ArrayBuffer, Blob or File (read a Response into bytes first)',
        got: (v as object | null)?.constructor?.name ?? typeof v,
      });
    }
    out.set(name, compact(v));
  }
  return out;
}

function wireAdapter(a: WorkerAdapterSpec, i = 0): WireAdapter {
  if (typeof a !== 'object' || a === null || a.source === undefined) {
    throw new ModelError('bad_option', 'an adapter needs a source', { key: `adapters[${i}]`, expected: '{ name?, source, enabled? }', got: a });
  }
  return { name: a.name, source: wireSource(a.source, `adapters[${i}].source`), enabled: a.enabled, format: a.format, scale: a.scale };
}
