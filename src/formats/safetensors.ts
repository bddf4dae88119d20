import { SafetensorsError, type ErrorFacts, type Issue, type SafetensorsCode, formatMessage } from '../errors.js';
import { IoError } from '../errors.js';
import type { ByteSource } from '../io/source.js';

/**
 * safetensors, read and written. Layout: `u64 LE n` · `n bytes of JSON header` · data section.
 * The header maps each tensor name to `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to
 * the data section) plus an optional `__metadata__` string→string map.
 * Spec: huggingface/safetensors `safetensors/src/tensor.rs` (`validate`, `prepare`).
 */

/** One table for everything per safetensors dtype: byte size and the typed array that views it. */
export const SAFE_DTYPES = {
  F64: { bytes: 8, array: Float64Array },
  F32: { bytes: 4, array: Float32Array },
  F16: { bytes: 2, array: Uint16Array }, // raw IEEE half bits
  BF16: { bytes: 2, array: Uint16Array }, // raw bfloat16 bits
  I64: { bytes: 8, array: BigInt64Array },
  I32: { bytes: 4, array: Int32Array },
  I16: { bytes: 2, array: Int16Array },
  I8: { bytes: 1, array: Int8Array },
  U8: { bytes: 1, array: Uint8Array },
  U16: { bytes: 2, array: Uint16Array },
  U32: { bytes: 4, array: Uint32Array },
  BOOL: { bytes: 1, array: Uint8Array }, // one byte per value, 0 or 1
} as const;

export type SafeDType = keyof typeof SAFE_DTYPES;
export type TypedArrayFor<D extends SafeDType = SafeDType> = InstanceType<(typeof SAFE_DTYPES)[D]['array']>;

/** dtypes the safetensors spec defines that we do not decode (yet): a clear error instead of "unknown". */
const UNSUPPORTED_DTYPES: ReadonlySet<string> = new Set(['F8_E4M3', 'F8_E5M2', 'F8_E8M0', 'F4', 'F6_E2M3', 'F6_E3M2', 'C64', 'U64']);

/** Python's safetensors refuses headers over 100 MB (`MAX_HEADER_SIZE` in tensor.rs); so do we, by default. */
export const DEFAULT_MAX_HEADER_BYTES = 100_000_000;
/**
 * At most this many tensors per file. The largest real checkpoint shards hold a few thousand; the cap
 * bounds the per-entry work and the index we build even for a header just under the size limit.
 */
export const MAX_TENSORS = 1 << 20;
/** At most this many dimensions: NumPy's NPY_MAXDIMS (32 before NumPy 2); no real weight comes close. */
export const MAX_RANK = 32;
/** One dimension may not exceed 2³² elements: no JS typed array can index more along one axis. */
export const MAX_DIM = 2 ** 32;

const DTYPE_LIST = Object.keys(SAFE_DTYPES).join(', ');

export interface TensorInfo {
  readonly name: string;
  readonly dtype: SafeDType;
  readonly shape: readonly number[];
  /** Byte offsets relative to the data section: `[begin, end)`. */
  readonly begin: number;
  readonly end: number;
}

export interface ReadOptions {
  /** Name used in errors (defaults to the source's name, or 'bytes'). */
  file?: string;
  /** Largest header accepted, in bytes (default DEFAULT_MAX_HEADER_BYTES). */
  maxHeaderBytes?: number;
  /** Most tensors accepted (default MAX_TENSORS). */
  maxTensors?: number;
}

type Problem = { code: SafetensorsCode; problem: string; facts: ErrorFacts };

function err(p: Problem, issues: Issue[] = []): SafetensorsError {
  return new SafetensorsError(p.code, p.problem, p.facts, issues);
}

/** Throws the first problem, carrying all of them in `issues` (one line each). */
function throwAll(problems: Problem[]): never {
  const issues: Issue[] = problems.map((p) => ({ code: p.code, message: formatMessage(p.problem, p.facts), ...p.facts }));
  const first = problems[0]!;
  const more = problems.length - 1;
  const facts = more ? { ...first.facts, detail: [first.facts.detail, `+${more} more issue${more === 1 ? '' : 's'} in .issues`].filter(Boolean).join('; ') } : first.facts;
  throw err({ ...first, facts }, issues);
}

function typeName(v: unknown): string {
  if (v === undefined) return 'missing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

/** Checks the 8-byte length prefix against the file size and the cap; returns the header length. */
function headerLength(prefix: Uint8Array, size: number, file: string, maxHeaderBytes: number): number {
  if (size < 8) throw err({ code: 'file_too_short', problem: 'file too short for a safetensors header', facts: { file, expected: '≥ 8 bytes', got: size } });
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(size - 8)) {
    throw err({ code: 'header_out_of_range', problem: 'header length runs past the end of the file', facts: { file, expected: `≤ ${size - 8}`, got: n.toString() } });
  }
  if (n > BigInt(maxHeaderBytes)) {
    throw err({ code: 'header_too_large', problem: 'header larger than the limit', facts: { file, expected: `≤ ${maxHeaderBytes} bytes (maxHeaderBytes)`, got: Number(n) } });
  }
  return Number(n);
}

const isWs = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/**
 * The keys of the top-level object, in order, duplicates included. JSON.parse silently keeps the last of
 * two equal keys, so a file with a tensor listed twice would parse; this scan (over text JSON.parse has
 * already accepted) sees every key.
 */
export function topLevelKeys(json: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (c === 0x22) {
      const start = i++;
      while (i < json.length) {
        const d = json.charCodeAt(i);
        if (d === 0x5c) i += 2;
        else if (d === 0x22) break;
        else i++;
      }
      if (depth === 1) {
        let j = i + 1;
        while (j < json.length && isWs(json.charCodeAt(j))) j++;
        if (json.charCodeAt(j) === 0x3a) keys.push(JSON.parse(json.slice(start, i + 1)) as string);
      }
    } else if (c === 0x7b || c === 0x5b) depth++;
    else if (c === 0x7d || c === 0x5d) depth--;
  }
  return keys;
}

interface ParsedHeader {
  metadata: Readonly<Record<string, string>>;
  tensors: ReadonlyMap<string, TensorInfo>;
}

/** Validates a header completely: every rule below gives a typed error, never a crash. */
function parseHeader(headerBytes: Uint8Array, dataSize: number, file: string, maxTensors: number): ParsedHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch (e) {
    throw err({ code: 'header_not_utf8', problem: 'header is not valid UTF-8', facts: { file, expected: 'UTF-8 JSON', got: `${headerBytes.byteLength} bytes`, cause: e } });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw err({ code: 'header_not_json', problem: 'header is not valid JSON', facts: { file, detail: e instanceof Error ? e.message : String(e), cause: e } });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw err({ code: 'header_not_object', problem: 'header is not a JSON object', facts: { file, expected: 'object', got: typeName(json) } });
  }
  const header = json as Record<string, unknown>;
  const count = Object.keys(header).length;
  const tensorCount = count - ('__metadata__' in header ? 1 : 0);
  if (tensorCount > maxTensors) {
    throw err({ code: 'too_many_tensors', problem: 'too many tensors in one file', facts: { file, expected: `≤ ${maxTensors} (maxTensors)`, got: tensorCount } });
  }
  const keys = topLevelKeys(text);
  if (keys.length !== count) {
    const seen = new Set<string>();
    for (const k of keys) {
      if (seen.has(k)) {
        throw err({ code: 'duplicate_tensor', problem: 'name appears twice in the header', facts: { file, tensor: k, expected: 'unique names', got: `${keys.filter((x) => x === k).length} entries` } });
      }
      seen.add(k);
    }
  }

  const metadata: Record<string, string> = {};
  const problems: Problem[] = [];
  if ('__metadata__' in header && header.__metadata__ !== null) {
    const m = header.__metadata__;
    if (typeof m !== 'object' || Array.isArray(m)) {
      problems.push({ code: 'bad_metadata', problem: '__metadata__ must be an object of strings', facts: { file, key: '__metadata__', expected: 'object', got: typeName(m) } });
    } else {
      for (const [k, v] of Object.entries(m as Record<string, unknown>)) {
        if (typeof v !== 'string') {
          problems.push({ code: 'bad_metadata', problem: '__metadata__ values must be strings', facts: { file, key: `__metadata__.${k}`, expected: 'string', got: typeName(v) } });
        } else metadata[k] = v;
      }
    }
  }

  const infos: TensorInfo[] = [];
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const facts = { file, tensor: name };
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      problems.push({ code: 'bad_entry', problem: 'tensor entry is not an object', facts: { ...facts, expected: '{dtype, shape, data_offsets}', got: typeName(entry) } });
      continue;
    }
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (typeof dtype !== 'string' || !(dtype in SAFE_DTYPES)) {
      if (typeof dtype === 'string' && UNSUPPORTED_DTYPES.has(dtype)) {
        problems.push({
          code: 'unsupported_dtype',
          problem: 'dtype not supported',
          facts: { ...facts, expected: `one of ${DTYPE_LIST}`, got: dtype, detail: 'FP8/FP6/FP4, complex and U64 tensors are not decoded; save the adapter as F32, F16 or BF16' },
        });
      } else {
        problems.push({ code: 'bad_dtype', problem: 'unknown or missing dtype', facts: { ...facts, expected: `one of ${DTYPE_LIST}`, got: typeof dtype === 'string' ? dtype : typeName(dtype) } });
      }
      continue;
    }
    const d = dtype as SafeDType;
    if (!Array.isArray(shape) || shape.length > MAX_RANK || !shape.every((x) => Number.isSafeInteger(x) && x >= 0 && x <= MAX_DIM)) {
      problems.push({
        code: 'bad_shape',
        problem: 'shape must be a list of non-negative integers',
        facts: { ...facts, expected: `≤ ${MAX_RANK} dims (MAX_RANK), each 0…${MAX_DIM} (MAX_DIM)`, got: Array.isArray(shape) ? shape : typeName(shape) },
      });
      continue;
    }
    let numel = 1;
    for (const x of shape as number[]) numel *= x;
    if (!Number.isSafeInteger(numel * SAFE_DTYPES[d].bytes)) {
      problems.push({ code: 'bad_shape', problem: 'shape has too many elements', facts: { ...facts, expected: `≤ ${Number.MAX_SAFE_INTEGER} bytes`, got: shape } });
      continue;
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((x) => Number.isSafeInteger(x) && x >= 0) ||
      (offsets[0] as number) > (offsets[1] as number)
    ) {
      problems.push({ code: 'bad_offsets', problem: 'data_offsets must be [begin, end] with 0 ≤ begin ≤ end', facts: { ...facts, expected: '[begin, end]', got: Array.isArray(offsets) ? offsets : typeName(offsets) } });
      continue;
    }
    const [begin, end] = offsets as [number, number];
    const bytes = numel * SAFE_DTYPES[d].bytes;
    if (end - begin !== bytes) {
      problems.push({
        code: 'size_mismatch',
        problem: 'byte range does not match shape × dtype size',
        facts: { ...facts, expected: bytes, got: end - begin, detail: `[${(shape as number[]).join(',')}] ${d} at [${begin}, ${end})` },
      });
      continue;
    }
    if (end > dataSize) {
      problems.push({ code: 'offsets_out_of_range', problem: 'tensor data runs past the end of the file', facts: { ...facts, expected: `end ≤ ${dataSize}`, got: end } });
      continue;
    }
    infos.push(Object.freeze({ name, dtype: d, shape: Object.freeze([...(shape as number[])]), begin, end }));
  }
  if (problems.length) throwAll(problems);

  // The data section must be covered exactly: tensors sorted by offset, each starting where the last ended.
  infos.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  let prev: TensorInfo | undefined;
  for (const t of infos) {
    if (t.begin < at) {
      throw err({ code: 'offsets_overlap', problem: 'tensor data overlaps the previous tensor', facts: { file, tensor: t.name, expected: `begin ≥ ${at} (end of ${prev!.name})`, got: t.begin } });
    }
    if (t.begin > at) {
      throw err({ code: 'offsets_hole', problem: 'unused bytes before tensor', facts: { file, tensor: t.name, expected: `begin = ${at}`, got: t.begin } });
    }
    at = t.end;
    prev = t;
  }
  if (at !== dataSize) {
    throw err({ code: 'offsets_hole', problem: 'unused bytes after the last tensor', facts: { file, expected: `data section of ${at} bytes`, got: dataSize } });
  }
  return { metadata: Object.freeze(metadata), tensors: new Map(infos.map((t) => [t.name, t])) };
}

/**
 * A validated safetensors file. `fromBytes` works on bytes in memory (zero-copy views); `open` reads the
 * header of a ByteSource first and each tensor's bytes only when asked.
 */
export class SafetensorsReader {
  readonly file: string;
  readonly metadata: Readonly<Record<string, string>>;
  /** Tensors in file order (by offset). */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /** Absolute byte offset of the data section (8 + header length). */
  readonly dataOffset: number;
  readonly #bytes: Uint8Array | undefined;
  readonly #source: ByteSource | undefined;

  private constructor(file: string, header: ParsedHeader, dataOffset: number, bytes?: Uint8Array, source?: ByteSource) {
    this.file = file;
    this.metadata = header.metadata;
    this.tensors = header.tensors;
    this.dataOffset = dataOffset;
    this.#bytes = bytes;
    this.#source = source;
  }

  /** Validates everything up front; tensor bytes are then zero-copy subarrays of `bytes`. */
  static fromBytes(bytes: Uint8Array, opts: ReadOptions = {}): SafetensorsReader {
    const file = opts.file ?? 'bytes';
    const n = headerLength(bytes.subarray(0, 8), bytes.byteLength, file, opts.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES);
    const header = parseHeader(bytes.subarray(8, 8 + n), bytes.byteLength - 8 - n, file, opts.maxTensors ?? MAX_TENSORS);
    return new SafetensorsReader(file, header, 8 + n, bytes);
  }

  /** Reads and validates the header (two reads); tensor bytes are read lazily by `bytes(name)`. */
  static async open(src: ByteSource, opts: ReadOptions & { signal?: AbortSignal } = {}): Promise<SafetensorsReader> {
    const file = opts.file ?? src.name;
    const prefix = src.size >= 8 ? await src.read(0, 8, opts.signal) : new Uint8Array(0);
    if (src.size >= 8 && prefix.byteLength !== 8) throw new IoError('truncated', 'short read', { file, expected: 8, got: prefix.byteLength });
    const n = headerLength(prefix, src.size, file, opts.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES);
    const headerBytes = await src.read(8, 8 + n, opts.signal);
    if (headerBytes.byteLength !== n) throw new IoError('truncated', 'short read', { file, expected: n, got: headerBytes.byteLength });
    const header = parseHeader(headerBytes, src.size - 8 - n, file, opts.maxTensors ?? MAX_TENSORS);
    return new SafetensorsReader(file, header, 8 + n, undefined, src);
  }

  /** The entry for `name` (SafetensorsError 'tensor_not_found' if absent). */
  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) {
      throw new SafetensorsError('tensor_not_found', 'no such tensor', { file: this.file, tensor: name, expected: `one of ${this.tensors.size} tensors`, got: name });
    }
    return t;
  }

  /** Raw little-endian bytes of one tensor (a zero-copy subarray when the reader holds the bytes). */
  async bytes(name: string, signal?: AbortSignal): Promise<Uint8Array> {
    const t = this.info(name);
    if (this.#bytes) return this.#bytes.subarray(this.dataOffset + t.begin, this.dataOffset + t.end);
    const out = await this.#source!.read(this.dataOffset + t.begin, this.dataOffset + t.end, signal);
    if (out.byteLength !== t.end - t.begin) throw new IoError('truncated', 'short read', { file: this.file, tensor: name, expected: t.end - t.begin, got: out.byteLength });
    return out;
  }

  /** Synchronous `bytes` for readers made by `fromBytes`. */
  bytesSync(name: string): Uint8Array {
    const t = this.info(name);
    if (!this.#bytes) {
      throw new IoError('unsupported_source', 'bytesSync needs a reader made by fromBytes', { file: this.file, tensor: name, expected: 'SafetensorsReader.fromBytes', got: 'SafetensorsReader.open' });
    }
    return this.#bytes.subarray(this.dataOffset + t.begin, this.dataOffset + t.end);
  }

  /** The tensor as its typed array: a zero-copy view when the bytes are aligned, else an aligned copy. */
  async typed(name: string, signal?: AbortSignal): Promise<TypedArrayFor> {
    return toTyped(this.info(name).dtype, await this.bytes(name, signal));
  }

  /** Synchronous `typed` for readers made by `fromBytes`. */
  typedSync(name: string): TypedArrayFor {
    return toTyped(this.info(name).dtype, this.bytesSync(name));
  }
}

/**
 * Views little-endian bytes as the dtype's typed array. Typed arrays use the platform's byte order,
 * little-endian on every engine JavaScript runs on in practice (x86, ARM, wasm).
 */
export function toTyped(dtype: SafeDType, bytes: Uint8Array): TypedArrayFor {
  const { bytes: size, array } = SAFE_DTYPES[dtype];
  const Ctor = array as unknown as new (b: ArrayBufferLike, o: number, n: number) => TypedArrayFor;
  let src = bytes;
  if (bytes.byteOffset % size !== 0) {
    src = new Uint8Array(bytes.byteLength);
    src.set(bytes);
  }
  return new Ctor(src.buffer, src.byteOffset, src.byteLength / size);
}

export interface TensorToWrite {
  dtype: SafeDType;
  shape: readonly number[];
  data: ArrayBufferView;
}

/**
 * Serialises tensors as Python's `safetensors.torch.save_file` does: tensors ordered by element size
 * (largest first, so every tensor is aligned to its own size), then by name — as `prepare` in
 * safetensors' tensor.rs sorts by dtype then name; offsets contiguous from 0; header JSON padded with
 * spaces to a multiple of 8 bytes.
 */
export function writeSafetensors(tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): Uint8Array {
  const file = '(writer)';
  const problems: Problem[] = [];
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') problems.push({ code: 'bad_metadata', problem: '__metadata__ values must be strings', facts: { file, key: `__metadata__.${k}`, expected: 'string', got: typeName(v) } });
    }
  }
  const entries: [string, TensorToWrite][] = [];
  for (const [name, t] of Object.entries(tensors)) {
    const facts = { file, tensor: name };
    if (name === '__metadata__') {
      problems.push({ code: 'bad_entry', problem: 'reserved tensor name', facts: { ...facts, expected: 'any name but __metadata__', got: name } });
      continue;
    }
    if (!(t.dtype in SAFE_DTYPES)) {
      problems.push({ code: 'bad_dtype', problem: 'unknown dtype', facts: { ...facts, expected: `one of ${DTYPE_LIST}`, got: String(t.dtype) } });
      continue;
    }
    if (!Array.isArray(t.shape) || t.shape.length > MAX_RANK || !t.shape.every((x) => Number.isSafeInteger(x) && x >= 0 && x <= MAX_DIM)) {
      problems.push({ code: 'bad_shape', problem: 'shape must be a list of non-negative integers', facts: { ...facts, expected: `≤ ${MAX_RANK} dims, each 0…${MAX_DIM}`, got: t.shape } });
      continue;
    }
    const bytes = t.shape.reduce((a, b) => a * b, 1) * SAFE_DTYPES[t.dtype].bytes;
    if (t.data.byteLength !== bytes) {
      problems.push({ code: 'size_mismatch', problem: 'data size does not match shape × dtype size', facts: { ...facts, expected: bytes, got: t.data.byteLength } });
      continue;
    }
    entries.push([name, t]);
  }
  if (problems.length) throwAll(problems);

  entries.sort(([an, a], [bn, b]) => SAFE_DTYPES[b.dtype].bytes - SAFE_DTYPES[a.dtype].bytes || (an < bn ? -1 : an > bn ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
  let at = 0;
  for (const [name, t] of entries) {
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [at, at + t.data.byteLength] };
    at += t.data.byteLength;
  }
  // Object key order: integer-like names ("0", "1") would be moved first by JS, which is harmless — the
  // reader orders by offset, and so does Python's.
  const json = new TextEncoder().encode(JSON.stringify(header));
  const n = Math.ceil(json.byteLength / 8) * 8;
  const out = new Uint8Array(8 + n + at);
  new DataView(out.buffer).setBigUint64(0, BigInt(n), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.byteLength, 8 + n);
  let pos = 8 + n;
  for (const [, t] of entries) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), pos);
    pos += t.data.byteLength;
  }
  return out;
}
