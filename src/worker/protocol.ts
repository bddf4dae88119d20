import {
  AdapterError,
  ApplyError,
  BackendError,
  ConfigError,
  IoError,
  ModelError,
  PeftError,
  PickleError,
  SafetensorsError,
  WasmRuntimeError,
  WorkerError,
  show,
  type ErrorFacts,
  type Issue,
} from '../errors.js';

/**
 * The messages between a `WorkerLM` (main thread) and `serveLM` (the worker). Every message carries
 * `peftjs: PROTOCOL` so that a worker or page with messages of its own can share the channel. Requests carry an
 * `id`; the worker answers each with `progress`/`chunk` messages (zero or more), then exactly one `done` or
 * `error`. `abort` names the request to abort and gets no answer of its own. Nothing here is a function or a
 * class instance: every message survives structured cloning, and Float32Array results travel transferred.
 */
export const PROTOCOL = 1;

/** What a worker can receive as a model or adapter source (structured-cloneable). */
export type WorkerSource = string | URL | Record<string, WorkerFile> | Map<string, WorkerFile> | FileSystemDirectoryHandle;
/** One in-memory file that crosses to the worker (copied, not transferred). */
export type WorkerFile = Uint8Array | ArrayBuffer | Blob;
/** The wire form of a source (URLs as strings). */
export type WireSource = string | Record<string, WorkerFile> | Map<string, WorkerFile> | FileSystemDirectoryHandle;

export interface WireAdapter {
  name?: string;
  source: WireSource;
  enabled?: boolean;
  format?: 'auto' | 'peft' | 'mlx';
  scale?: number;
}

export interface WireLoadOptions {
  backend?: 'wasm' | 'js' | 'webgpu' | 'auto';
  weightDtype?: 'f32' | 'bf16';
  maxLength?: number;
  limits?: Record<string, number>;
  adapters?: WireAdapter[];
}

export interface WireDraft {
  adapter?: string;
  /** The id of a model in the same worker. */
  model?: number;
  exitAfterLayers?: number;
  sharedCache?: boolean;
  tokens?: number | 'auto';
  minProbability?: number;
}

export interface WireGenerateOptions {
  maxNewTokens?: number;
  stop?: number | string | (number | string)[];
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  seed?: number;
  draft?: WireDraft;
}

/** What the worker says about a loaded model. */
export interface ModelInfo {
  /** HF model_type, vocab, layers… (DecoderConfig). */
  config: Record<string, unknown>;
  maxLength: number;
  backend: string;
  hasTokenizer: boolean;
  description: string;
  adapters: { name: string; enabled: boolean; modules: number }[];
}

/** `aborted`: the caller's signal had fired before the request was sent. */
type Req<T> = T & { peftjs: typeof PROTOCOL; id: number; aborted?: boolean };
export type Request =
  | Req<{ type: 'load'; source: WireSource; options: WireLoadOptions }>
  | Req<{ type: 'adapter'; model: number; adapter: WireAdapter; limits?: Record<string, number> }>
  | Req<{ type: 'enable'; model: number; on: boolean; adapter?: string }>
  | Req<{ type: 'generate'; model: number; prompt: string | number[]; options: WireGenerateOptions; stream: boolean }>
  | Req<{ type: 'logits'; model: number; ids: number[]; layers?: number }>
  | Req<{ type: 'encode'; model: number; text: string }>
  | Req<{ type: 'decode'; model: number; ids: number[]; skipSpecialTokens?: boolean }>
  | Req<{ type: 'dispose'; model: number }>
  | Req<{ type: 'abort'; target: number }>
  /** The main side's handshake (answered with `ready`; the worker also says `ready` unasked when it starts). */
  | Req<{ type: 'hello' }>;

type Rep<T> = T & { peftjs: typeof PROTOCOL };
export type Reply =
  | Rep<{ type: 'ready' }>
  | Rep<{ type: 'progress'; id: number; progress: { loaded: number; total?: number; file?: string; adapter?: string } }>
  | Rep<{ type: 'chunk'; id: number; chunk: unknown }>
  | Rep<{ type: 'done'; id: number; value: unknown }>
  | Rep<{ type: 'error'; id: number; error: WireError }>;

/** An error as data: its class by name, `code`, message, facts and issues, and the worker's stack. */
export interface WireError {
  name: string;
  message: string;
  stack?: string;
  code?: string;
  facts?: Omit<ErrorFacts, 'cause' | 'detail'>;
  issues?: Issue[];
  /** Own enumerable data fields of a non-PeftError (StrictJsonError's kind, pos, path). */
  fields?: Record<string, unknown>;
  cause?: WireError;
}

/** The PeftError classes by name, re-created on the receiving side. */
const CLASSES: Record<string, new (code: never, problem: string, facts?: ErrorFacts, issues?: Issue[]) => PeftError> = {
  PeftError,
  SafetensorsError,
  PickleError,
  ConfigError,
  AdapterError,
  ApplyError,
  IoError,
  WasmRuntimeError,
  BackendError,
  ModelError,
  WorkerError,
};
const BUILTIN: Record<string, ErrorConstructor> = { Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError };

/** `v` if structured cloning keeps it, else its printed form (facts from hostile files may hold anything). */
function cloneable(v: unknown): unknown {
  if (v === undefined || v === null || typeof v !== 'object') return typeof v === 'function' || typeof v === 'symbol' ? show(v) : v;
  try {
    return structuredClone(v);
  } catch {
    return show(v);
  }
}

const FACT_KEYS = ['file', 'tensor', 'key', 'module', 'where', 'expected', 'got'] as const;

/** Any thrown value as a WireError (never throws; causes followed at most 3 deep). */
export function toWireError(e: unknown, depth = 0): WireError {
  if (!(e instanceof Error)) return { name: 'Error', message: typeof e === 'string' ? e : `non-Error thrown: ${show(e)}` };
  const w: WireError = { name: e.name, message: e.message, stack: e.stack };
  if (e instanceof PeftError) {
    w.code = e.code;
    const facts: Record<string, unknown> = {};
    for (const k of FACT_KEYS) if ((e as unknown as Record<string, unknown>)[k] !== undefined) facts[k] = cloneable((e as unknown as Record<string, unknown>)[k]);
    w.facts = facts;
    w.issues = e.issues.map((i) => {
      const out: Record<string, unknown> = { code: i.code, message: i.message };
      for (const k of FACT_KEYS) if (i[k] !== undefined) out[k] = cloneable(i[k]);
      return out as unknown as Issue;
    });
  } else {
    const fields: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(e)) if (k !== 'name' && k !== 'message' && k !== 'stack' && k !== 'cause') fields[k] = cloneable(v);
    if (Object.keys(fields).length) w.fields = fields;
  }
  if (e.cause !== undefined && depth < 3) w.cause = toWireError(e.cause, depth + 1);
  return w;
}

/**
 * A WireError as the error it was: the same PeftError subclass (so `instanceof ModelError` holds) with the same
 * `code`, message, facts and issues; a built-in Error class by name; other classes as an Error with their `name`.
 * The stack is the caller's, followed by the worker's.
 */
export function fromWireError(w: WireError, localStack?: string): Error {
  const Cls = w.code !== undefined ? CLASSES[w.name] : undefined;
  let e: Error;
  if (Cls) {
    e = new Cls(w.code as never, '', { ...w.facts }, w.issues ?? []);
    e.message = w.message;
  } else {
    e = new (BUILTIN[w.name] ?? Error)(w.message);
    if (e.name !== w.name) Object.defineProperty(e, 'name', { value: w.name, configurable: true, writable: true });
    if (w.code !== undefined) Object.assign(e, { code: w.code });
    if (w.fields) Object.assign(e, w.fields);
  }
  if (w.cause) Object.defineProperty(e, 'cause', { value: fromWireError(w.cause), configurable: true, writable: true });
  const here = (localStack ?? '').split('\n').slice(1).join('\n');
  const there = (w.stack ?? '').split('\n').slice(1).join('\n');
  e.stack = `${e.name}: ${e.message}${here ? `\n${here}` : ''}${there ? `\n    --- in the worker ---\n${there}` : ''}`;
  return e;
}

/** True for a message of this protocol (any version: a version mismatch is answered, not ignored). */
export function isPeftMessage(m: unknown): m is { peftjs: number; type: string; id?: number } {
  return typeof m === 'object' && m !== null && typeof (m as { peftjs?: unknown }).peftjs === 'number' && typeof (m as { type?: unknown }).type === 'string';
}
