/**
 * Every error peftjs throws is a PeftError subclass with a stable snake_case `code` and the facts a
 * caller can branch on. Messages follow one pattern: `<problem>: expected X, got Y → at <where>`.
 */

/** Facts attached to an error. `where` is a path a person can follow (file › tensor, or a module path). */
export interface ErrorFacts {
  file?: string;
  tensor?: string;
  key?: string;
  module?: string;
  where?: string;
  expected?: unknown;
  got?: unknown;
  /** Extra human detail appended to the message. */
  detail?: string;
  cause?: unknown;
}

/** One problem found during validation; several are collected into an `issues` list. */
export interface Issue extends ErrorFacts {
  code: string;
  message: string;
}

/** Bounds of `show`: values in error messages come from hostile files, so they are cut, never walked whole. */
const SHOW_DEPTH = 4;
const SHOW_ITEMS = 32;
const SHOW_CHARS = 400;

/**
 * A value as message text: JSON-like, at most SHOW_DEPTH levels deep, SHOW_ITEMS items per array or object and
 * SHOW_CHARS characters. Never throws and never recurses deeper than SHOW_DEPTH (a header value nested 4,500
 * deep once overflowed the stack here), whatever it is given: cycles, throwing getters, Proxies, typed arrays.
 */
export function show(v: unknown): string {
  if (typeof v === 'string') return cut(v);
  try {
    return cut(showAt(v, 0));
  } catch {
    return '(unprintable value)';
  }
}

function cut(s: string): string {
  return s.length > SHOW_CHARS ? `${s.slice(0, SHOW_CHARS - 1)}…` : s;
}

function showAt(v: unknown, depth: number): string {
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v.length > SHOW_CHARS ? `${v.slice(0, SHOW_CHARS)}…` : v);
    case 'bigint':
      return `${v}n`;
    case 'number':
    case 'boolean':
    case 'undefined':
      return String(v);
    case 'symbol':
      return v.toString();
    case 'function':
      return `[function ${(v as { name?: string }).name || 'anonymous'}]`;
  }
  if (v === null) return 'null';
  if (ArrayBuffer.isView(v)) return `${v.constructor.name}(${(v as { length?: number }).length ?? v.byteLength})`;
  const isArr = Array.isArray(v);
  if (depth >= SHOW_DEPTH) return isArr ? '[…]' : '{…}';
  const parts: string[] = [];
  let len = 0;
  if (isArr) {
    const a = v as unknown[];
    for (let i = 0; i < a.length && i < SHOW_ITEMS && len < SHOW_CHARS; i++) len += push(parts, showAt(a[i], depth + 1));
    if (a.length > parts.length) parts.push(`… ${a.length - parts.length} more`);
    return `[${parts.join(',')}]`;
  }
  if (v instanceof Map) {
    let n = 0;
    for (const [k, x] of v) {
      if (n++ >= SHOW_ITEMS || len >= SHOW_CHARS) break;
      len += push(parts, `${showAt(k, depth + 1)}:${showAt(x, depth + 1)}`);
    }
    if (v.size > parts.length) parts.push(`… ${v.size - parts.length} more`);
    return `Map{${parts.join(',')}}`;
  }
  const keys = Object.keys(v as object);
  for (let i = 0; i < keys.length && i < SHOW_ITEMS && len < SHOW_CHARS; i++) {
    len += push(parts, `${JSON.stringify(keys[i])}:${showAt((v as Record<string, unknown>)[keys[i]!], depth + 1)}`);
  }
  if (keys.length > parts.length) parts.push(`… ${keys.length - parts.length} more`);
  return `{${parts.join(',')}}`;
}

function push(parts: string[], s: string): number {
  parts.push(s);
  return s.length + 1;
}

/** Where a problem is: `file › tensor`, or a module path, or a config key. */
export function whereOf(f: ErrorFacts): string | undefined {
  if (f.where) return f.where;
  const parts = [f.file, f.tensor ?? f.key ?? f.module].filter((p): p is string => !!p);
  return parts.length ? parts.join(' › ') : undefined;
}

/** Builds the one-line message: `<problem>: expected X, got Y → at <where>`. */
export function formatMessage(problem: string, f: ErrorFacts): string {
  let msg = problem;
  if (f.expected !== undefined || f.got !== undefined) {
    const bits: string[] = [];
    if (f.expected !== undefined) bits.push(`expected ${show(f.expected)}`);
    if (f.got !== undefined) bits.push(`got ${show(f.got)}`);
    msg += `: ${bits.join(', ')}`;
  }
  if (f.detail) msg += ` (${f.detail})`;
  const w = whereOf(f);
  if (w) msg += ` → at ${w}`;
  return msg;
}

/** Base class: `code` is stable, `facts` holds the data, `issues` lists every problem when several were found. */
export class PeftError<C extends string = string> extends Error {
  readonly code: C;
  readonly file?: string;
  readonly tensor?: string;
  readonly key?: string;
  readonly module?: string;
  readonly expected?: unknown;
  readonly got?: unknown;
  readonly issues: Issue[];

  constructor(code: C, problem: string, facts: ErrorFacts = {}, issues: Issue[] = []) {
    super(formatMessage(problem, facts), facts.cause !== undefined ? { cause: facts.cause } : undefined);
    this.name = new.target.name;
    this.code = code;
    this.file = facts.file;
    this.tensor = facts.tensor;
    this.key = facts.key;
    this.module = facts.module;
    this.expected = facts.expected;
    this.got = facts.got;
    this.issues = issues;
  }
}

/** Collects issues, then throws one error listing them all (one "✖ … → at …" line each). */
export function issuesMessage(title: string, issues: readonly Issue[]): string {
  return [`${title} (${issues.length} issue${issues.length === 1 ? '' : 's'})`, ...issues.map((i) => `  ✖ ${i.message}`)].join('\n');
}

export type SafetensorsCode =
  | 'file_too_short'
  | 'header_too_large'
  | 'header_out_of_range'
  | 'header_not_utf8'
  | 'header_not_json'
  | 'header_not_object'
  | 'duplicate_tensor'
  | 'bad_entry'
  | 'bad_dtype'
  | 'unsupported_dtype'
  | 'bad_shape'
  | 'bad_offsets'
  | 'size_mismatch'
  | 'offsets_out_of_range'
  | 'offsets_overlap'
  | 'offsets_hole'
  | 'bad_metadata'
  | 'tensor_not_found'
  | 'too_many_tensors'
  | 'too_large';
export class SafetensorsError extends PeftError<SafetensorsCode> {
  // Spelled out: minifiers rename classes, and `new.target.name` would then read `L`.
  override readonly name = 'SafetensorsError';
}

export type PickleCode =
  | 'not_a_zip'
  | 'bad_zip'
  | 'zip_unsupported'
  | 'missing_record'
  | 'forbidden_global'
  | 'forbidden_opcode'
  | 'bad_pickle'
  | 'bad_storage'
  | 'unsupported_dtype'
  | 'too_large';
export class PickleError extends PeftError<PickleCode> {
  override readonly name = 'PickleError';
}

export type ConfigCode =
  | 'config_missing'
  | 'config_not_json'
  | 'config_invalid'
  | 'unsupported_peft_type'
  | 'unsupported_init'
  | 'unsupported_layer_replication'
  | 'unsupported_merged_linear'
  | 'bad_rank'
  | 'unsupported_feature'
  | 'unsupported_fine_tune'
  | 'unknown_format'
  | 'bad_regex'
  | 'too_many_patterns'
  | 'regex_budget';
export class ConfigError extends PeftError<ConfigCode> {
  override readonly name = 'ConfigError';
}

export type AdapterCode =
  | 'weights_missing'
  | 'unpaired_factor'
  | 'unknown_tensor'
  | 'rank_mismatch'
  | 'shape_mismatch'
  | 'bad_dtype'
  | 'invalid_adapter'
  /** A NaN or ±Inf value in an adapter tensor, under `checkFinite: true`. */
  | 'non_finite';
export class AdapterError extends PeftError<AdapterCode> {
  override readonly name = 'AdapterError';
}

export type ApplyCode =
  | 'module_not_found'
  | 'not_wrappable'
  | 'in_mismatch'
  | 'out_mismatch'
  | 'rank_mismatch'
  | 'dtype_mismatch'
  | 'already_applied'
  | 'not_applied'
  | 'fused'
  | 'not_fused'
  | 'apply_failed'
  | 'bad_option'
  | 'wrong_module_type';
export class ApplyError extends PeftError<ApplyCode> {
  override readonly name = 'ApplyError';
}

export type IoCode = 'not_found' | 'http_error' | 'html_response' | 'truncated' | 'aborted' | 'unsupported_source' | 'read_failed' | 'too_large';
export class IoError extends PeftError<IoCode> {
  override readonly name = 'IoError';
}

export type RuntimeCode = 'no_webassembly' | 'no_simd' | 'no_relaxed_simd' | 'bad_option' | 'worker_failed' | 'wasm_compile_failed' | 'out_of_memory' | 'disposed' | 'not_initialized';
export class WasmRuntimeError extends PeftError<RuntimeCode> {
  override readonly name = 'WasmRuntimeError';
}

export type BackendCode =
  | 'unknown_backend'
  | 'no_webgpu'
  | 'device_lost'
  | 'gpu_out_of_memory'
  | 'shape_mismatch'
  | 'dtype_unsupported'
  | 'wrong_device'
  | 'shader_failed'
  | 'disposed'
  | 'not_initialized';
export class BackendError extends PeftError<BackendCode> {
  override readonly name = 'BackendError';
}

export type ModelCode =
  | 'config_missing'
  | 'config_invalid'
  | 'unknown_architecture'
  | 'missing_tensor'
  | 'tensor_shape'
  | 'context_full'
  | 'no_tokenizer'
  | 'bad_ids'
  | 'bad_option'
  | 'aborted';
/** A model checkpoint, its config or a generation request is not usable (CausalLM, generate). */
export class ModelError extends PeftError<ModelCode> {
  override readonly name = 'ModelError';
}

export type WorkerCode = 'terminated' | 'crashed' | 'no_handshake' | 'bad_message' | 'disposed' | 'not_a_worker';
/** A model run in a worker (`WorkerLM`, peftjs/worker): the worker is gone or failed, or the model was disposed. */
export class WorkerError extends PeftError<WorkerCode> {
  override readonly name = 'WorkerError';
}
