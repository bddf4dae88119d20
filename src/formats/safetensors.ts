import { SafetensorsError, type ErrorFacts, type Issue, type SafetensorsCode, formatMessage } from '../errors.js';
import { IoError } from '../errors.js';
import type { ByteSource } from '../io/source.js';
import { DEFAULT_LIMITS, resolveLimits, type LoadLimits } from '../limits.js';
import { JsonFloat, parseStrictJson, StrictJsonError, type JsonValue } from './json.js';

/**
 * safetensors, read and written. Layout: `u64 LE n` · `n bytes of JSON header` · data section.
 * The header maps each tensor name to `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to
 * the data section) plus an optional `__metadata__` string→string map.
 * Spec: huggingface/safetensors `safetensors/src/tensor.rs` (`validate`, `prepare`).
 */

/**
 * Every dtype the reference knows, in its `Dtype` enum order ("MUST be in increasing alignment order",
 * safetensors/src/tensor.rs): the writer sorts tensors by this order, descending, then by name.
 */
export const SAFE_DTYPE_ORDER = [
  'BOOL',
  'F4',
  'F6_E2M3',
  'F6_E3M2',
  'U8',
  'I8',
  'F8_E5M2',
  'F8_E4M3',
  'F8_E8M0',
  'F8_E4M3FNUZ',
  'F8_E5M2FNUZ',
  'I16',
  'U16',
  'F16',
  'BF16',
  'I32',
  'U32',
  'F32',
  'C64',
  'F64',
  'I64',
  'U64',
] as const;

export type SafeDType = (typeof SAFE_DTYPE_ORDER)[number];

/** Element width in bits (the reference's `Dtype::bitsize`): F4 packs two per byte, F6 four per three bytes. */
const BITS: Record<SafeDType, number> = {
  BOOL: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  F8_E4M3FNUZ: 8,
  F8_E5M2FNUZ: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
};

/** The dtypes a JS typed array can hold (F16/BF16 as raw bits, BOOL one byte per value); the others are bytes only. */
const ARRAYS = {
  F64: Float64Array,
  F32: Float32Array,
  F16: Uint16Array, // raw IEEE half bits
  BF16: Uint16Array, // raw bfloat16 bits
  I64: BigInt64Array,
  U64: BigUint64Array,
  I32: Int32Array,
  U32: Uint32Array,
  I16: Int16Array,
  U16: Uint16Array,
  I8: Int8Array,
  U8: Uint8Array,
  BOOL: Uint8Array, // one byte per value, 0 or 1
} as const;

export type DecodableDType = keyof typeof ARRAYS;
export type TypedArrayFor<D extends DecodableDType = DecodableDType> = InstanceType<(typeof ARRAYS)[D]>;

/** Per dtype: bits per element, bytes per element (fractional below 8 bits), and its typed array (null: bytes only). */
export const SAFE_DTYPES: Readonly<Record<SafeDType, { readonly bits: number; readonly bytes: number; readonly array: (typeof ARRAYS)[DecodableDType] | null }>> = Object.freeze(
  Object.fromEntries(SAFE_DTYPE_ORDER.map((d) => [d, Object.freeze({ bits: BITS[d], bytes: BITS[d] / 8, array: (ARRAYS as Record<string, (typeof ARRAYS)[DecodableDType]>)[d] ?? null })])) as Record<
    SafeDType,
    { bits: number; bytes: number; array: (typeof ARRAYS)[DecodableDType] | null }
  >,
);

const hasOwn = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);
/** True for a dtype name the reference knows (own keys only: `toString` is not a dtype). */
export function isSafeDType(d: unknown): d is SafeDType {
  return typeof d === 'string' && hasOwn(BITS, d);
}
/** True for a dtype `toTyped` can view. */
export function isDecodable(d: string): d is DecodableDType {
  return hasOwn(ARRAYS, d);
}

/** Python's safetensors refuses headers over 100 MB (`MAX_HEADER_SIZE` in tensor.rs); so do we, by default. */
export const DEFAULT_MAX_HEADER_BYTES = DEFAULT_LIMITS.maxHeaderBytes;
/**
 * At most this many tensors per file (stricter than the reference, which has no cap). The largest real
 * checkpoint shards hold a few thousand; the cap bounds the per-entry work and the index we build.
 */
export const MAX_TENSORS = DEFAULT_LIMITS.maxTensors;
/** At most this many dimensions: NumPy's NPY_MAXDIMS (32 before NumPy 2); no real weight comes close. */
export const MAX_RANK = DEFAULT_LIMITS.maxRank;
/** One dimension may not exceed 2³² elements: no JS typed array can index more along one axis. */
export const MAX_DIM = 2 ** 32;

const DTYPE_LIST = SAFE_DTYPE_ORDER.join(', ');

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
  /** Caps (header bytes, JSON depth, tensors, rank, elements); defaults DEFAULT_LIMITS. */
  limits?: Partial<LoadLimits>;
  /** Largest header accepted, in bytes (overrides limits.maxHeaderBytes). */
  maxHeaderBytes?: number;
  /** Most tensors accepted (overrides limits.maxTensors). */
  maxTensors?: number;
}

function limitsOf(opts: ReadOptions, fallback?: Partial<LoadLimits>): Readonly<LoadLimits> {
  const l = resolveLimits({ ...fallback, ...opts.limits });
  if (opts.maxHeaderBytes === undefined && opts.maxTensors === undefined) return l;
  return { ...l, maxHeaderBytes: opts.maxHeaderBytes ?? l.maxHeaderBytes, maxTensors: opts.maxTensors ?? l.maxTensors };
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
  if (v instanceof JsonFloat) return `number ${v.float}`;
  return typeof v;
}

/** A header value for a message: numbers as written (`[1.0]`, `[-0]`), not as JsonFloat objects. */
function plain(v: unknown): unknown {
  if (v instanceof JsonFloat) return v.float;
  if (Array.isArray(v) && v.length <= 64 && v.some((x) => x instanceof JsonFloat)) {
    return `[${v.map((x) => (x instanceof JsonFloat ? x.float : typeof x === 'number' ? String(x) : typeName(x))).join(',')}]`;
  }
  return v;
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

interface ParsedHeader {
  metadata: Readonly<Record<string, string>>;
  tensors: ReadonlyMap<string, TensorInfo>;
}

/** The message for a refused shape under `lim`. */
const shapeExpected = (lim: Readonly<LoadLimits>) => `≤ ${lim.maxRank} dims (maxRank), each an integer ≥ 0, ≤ ${lim.maxElements} elements (maxElements)`;

/** A shape's element count, or why it is refused: the reference's rules (a usize list) plus our caps. */
function checkShape(shape: unknown, lim: Readonly<LoadLimits>): number | string {
  if (!Array.isArray(shape) || shape.length > lim.maxRank) return 'shape must be a list of non-negative integers';
  // The product of the non-zero dims is capped too: [2³², 2³², 0] holds nothing but no reader should index it.
  let numel = 1;
  let nonzero = 1;
  for (let i = 0; i < shape.length; i++) {
    const x = shape[i];
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) return 'shape must be a list of non-negative integers';
    numel *= x;
    if (x) nonzero *= x;
  }
  if (nonzero > lim.maxElements) return 'shape has too many elements';
  return numel;
}

/** Validates a header completely: every rule below gives a typed error, never a crash. */
function parseHeader(headerBytes: Uint8Array, dataSize: number, file: string, lim: Readonly<LoadLimits>): ParsedHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch (e) {
    throw err({ code: 'header_not_utf8', problem: 'header is not valid UTF-8', facts: { file, expected: 'UTF-8 JSON', got: `${headerBytes.byteLength} bytes`, cause: e } });
  }
  let json: JsonValue;
  try {
    json = parseStrictJson(text, { maxDepth: lim.maxJsonDepth });
  } catch (e) {
    if (!(e instanceof StrictJsonError)) throw e;
    if (e.kind === 'duplicate_key' && e.path.length === 0) {
      throw err({ code: 'duplicate_tensor', problem: 'name appears twice in the header', facts: { file, tensor: e.key, expected: 'unique names', got: 'a second entry', cause: e } });
    }
    if (e.kind === 'duplicate_key') {
      const inMeta = e.path[0] === '__metadata__';
      throw err({
        code: inMeta ? 'bad_metadata' : 'bad_entry',
        problem: inMeta ? '__metadata__ repeats a key' : 'tensor entry repeats a field',
        facts: { file, ...(inMeta ? { key: '__metadata__' } : { tensor: e.path[0] }), expected: 'each field once', got: e.message, cause: e },
      });
    }
    const facts: ErrorFacts = { file, detail: e.message, cause: e };
    if (e.kind === 'depth') Object.assign(facts, { expected: `≤ ${lim.maxJsonDepth} levels (maxJsonDepth)`, got: 'deeper' });
    throw err({ code: 'header_not_json', problem: 'header is not valid JSON', facts });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json) || json instanceof JsonFloat) {
    throw err({ code: 'header_not_object', problem: 'header is not a JSON object', facts: { file, expected: 'object', got: typeName(json) } });
  }
  const header = json;
  const names = Object.keys(header);
  const tensorCount = names.length - (hasOwn(header, '__metadata__') ? 1 : 0);
  if (tensorCount > lim.maxTensors) {
    throw err({ code: 'too_many_tensors', problem: 'too many tensors in one file', facts: { file, expected: `≤ ${lim.maxTensors} (maxTensors)`, got: tensorCount } });
  }

  const metadata: Record<string, string> = {};
  const problems: Problem[] = [];
  if (hasOwn(header, '__metadata__') && header.__metadata__ !== null) {
    const m = header.__metadata__;
    if (typeof m !== 'object' || Array.isArray(m) || m instanceof JsonFloat) {
      problems.push({ code: 'bad_metadata', problem: '__metadata__ must be an object of strings', facts: { file, key: '__metadata__', expected: 'object', got: typeName(m) } });
    } else {
      for (const [k, v] of Object.entries(m)) {
        if (typeof v !== 'string') {
          problems.push({ code: 'bad_metadata', problem: '__metadata__ values must be strings', facts: { file, key: `__metadata__.${k}`, expected: 'string', got: typeName(v) } });
        } else metadata[k] = v;
      }
    }
  }

  const infos: TensorInfo[] = [];
  for (const name of names) {
    if (name === '__metadata__') continue;
    const entry = header[name];
    const facts = { file, tensor: name };
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry) || entry instanceof JsonFloat) {
      problems.push({ code: 'bad_entry', problem: 'tensor entry is not an object', facts: { ...facts, expected: '{dtype, shape, data_offsets}', got: typeName(entry) } });
      continue;
    }
    const { dtype, shape, data_offsets: offsets } = entry;
    if (!isSafeDType(dtype)) {
      problems.push({ code: 'bad_dtype', problem: 'unknown or missing dtype', facts: { ...facts, expected: `one of ${DTYPE_LIST}`, got: typeof dtype === 'string' ? dtype : typeName(dtype) } });
      continue;
    }
    const numel = checkShape(shape, lim);
    if (typeof numel === 'string') {
      problems.push({ code: 'bad_shape', problem: numel, facts: { ...facts, expected: shapeExpected(lim), got: Array.isArray(shape) ? plain(shape) : typeName(shape) } });
      continue;
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((x) => Number.isSafeInteger(x) && (x as number) >= 0) ||
      (offsets[0] as number) > (offsets[1] as number)
    ) {
      problems.push({ code: 'bad_offsets', problem: 'data_offsets must be [begin, end] with 0 ≤ begin ≤ end', facts: { ...facts, expected: '[begin, end]', got: Array.isArray(offsets) ? plain(offsets) : typeName(offsets) } });
      continue;
    }
    const [begin, end] = offsets as [number, number];
    const bits = numel * BITS[dtype];
    // The reference's MisalignedSlice: sub-byte dtypes must fill whole bytes.
    if (bits % 8 !== 0) {
      problems.push({ code: 'size_mismatch', problem: 'elements do not fill whole bytes', facts: { ...facts, expected: `a multiple of 8 bits`, got: `${numel} × ${BITS[dtype]} bits`, detail: `${dtype} [${(shape as number[]).join(',')}]` } });
      continue;
    }
    const bytes = bits / 8;
    if (end - begin !== bytes) {
      problems.push({
        code: 'size_mismatch',
        problem: 'byte range does not match shape × dtype size',
        facts: { ...facts, expected: bytes, got: end - begin, detail: `[${(shape as number[]).join(',')}] ${dtype} at [${begin}, ${end})` },
      });
      continue;
    }
    if (end > dataSize) {
      problems.push({ code: 'offsets_out_of_range', problem: 'tensor data runs past the end of the file', facts: { ...facts, expected: `end ≤ ${dataSize}`, got: end } });
      continue;
    }
    infos.push(Object.freeze({ name, dtype, shape: Object.freeze([...(shape as number[])]), begin, end }));
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
    const lim = limitsOf(opts);
    const n = headerLength(bytes.subarray(0, 8), bytes.byteLength, file, lim.maxHeaderBytes);
    const header = parseHeader(bytes.subarray(8, 8 + n), bytes.byteLength - 8 - n, file, lim);
    return new SafetensorsReader(file, header, 8 + n, bytes);
  }

  /** Reads and validates the header (two reads); tensor bytes are read lazily by `bytes(name)`. */
  static async open(src: ByteSource, opts: ReadOptions & { signal?: AbortSignal } = {}): Promise<SafetensorsReader> {
    const file = opts.file ?? src.name;
    const prefix = src.size >= 8 ? await src.read(0, 8, opts.signal) : new Uint8Array(0);
    if (src.size >= 8 && prefix.byteLength !== 8) throw new IoError('truncated', 'short read', { file, expected: 8, got: prefix.byteLength });
    const lim = limitsOf(opts, src.limits);
    const n = headerLength(prefix, src.size, file, lim.maxHeaderBytes);
    const headerBytes = await src.read(8, 8 + n, opts.signal);
    if (headerBytes.byteLength !== n) throw new IoError('truncated', 'short read', { file, expected: n, got: headerBytes.byteLength });
    const header = parseHeader(headerBytes, src.size - 8 - n, file, lim);
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
    return toTyped(this.info(name).dtype, await this.bytes(name, signal), `${this.file} › ${name}`);
  }

  /** Synchronous `typed` for readers made by `fromBytes`. */
  typedSync(name: string): TypedArrayFor {
    return toTyped(this.info(name).dtype, this.bytesSync(name), `${this.file} › ${name}`);
  }
}

/**
 * Views little-endian bytes as the dtype's typed array. Typed arrays use the platform's byte order,
 * little-endian on every engine JavaScript runs on in practice (x86, ARM, wasm). F4/F6/F8 and C64 have no
 * typed array: SafetensorsError 'unsupported_dtype' naming the dtype (their raw bytes are still readable).
 */
export function toTyped(dtype: SafeDType, bytes: Uint8Array, where = 'tensor'): TypedArrayFor {
  if (!isDecodable(dtype)) {
    throw new SafetensorsError('unsupported_dtype', 'dtype cannot be decoded', {
      where,
      expected: `one of ${Object.keys(ARRAYS).join(', ')}`,
      got: dtype,
      detail: 'FP8/FP6/FP4 and complex tensors are listed and their bytes readable, but not decoded; save the tensor as F32, F16 or BF16',
    });
  }
  const array = ARRAYS[dtype];
  const size = array.BYTES_PER_ELEMENT;
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

/** An unpaired UTF-16 surrogate: no UTF-8 encoding exists, and the reference rejects its `\ud800` escape. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Orders strings as Rust orders `String`s: by UTF-8 bytes, which is code-point order (not UTF-16 unit order). */
export function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // A surrogate starts an astral code point, which sorts above every BMP one (UTF-16 units put U+E000…U+FFFF above it).
    const sx = x >= 0xd800 && x <= 0xdfff;
    const sy = y >= 0xd800 && y <= 0xdfff;
    if (sx !== sy) return sx ? 1 : -1;
    return x - y;
  }
  return a.length - b.length;
}

/**
 * Serialises tensors byte for byte as the Rust reference (`serialize` in safetensors/src/tensor.rs, which
 * Python's `save_file` calls) does:
 * - tensors sorted by dtype in the reference's `Dtype` order, descending (so each tensor is aligned to its
 *   own size), then by name as UTF-8 bytes; data offsets contiguous from 0;
 * - the header written by serde_json: `__metadata__` first when metadata is given (even `{}`), then each
 *   tensor as `{"dtype":…,"shape":[…],"data_offsets":[b,e]}`, no whitespace, numeric names not reordered;
 * - the header padded with spaces to a multiple of 8 bytes.
 * Metadata keys are written in UTF-8 byte order (the reference's HashMap order is unspecified; this is one of
 * its orders, and a reproducible one). A lone surrogate in a name, key or value is SafetensorsError.
 */
export function writeSafetensors(tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): Uint8Array {
  const file = '(writer)';
  const problems: Problem[] = [];
  if (metadata !== undefined && (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata))) {
    problems.push({ code: 'bad_metadata', problem: '__metadata__ must be an object of strings', facts: { file, key: '__metadata__', expected: 'object', got: typeName(metadata) } });
  } else if (metadata) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') problems.push({ code: 'bad_metadata', problem: '__metadata__ values must be strings', facts: { file, key: `__metadata__.${k}`, expected: 'string', got: typeName(v) } });
      else if (LONE_SURROGATE.test(k) || LONE_SURROGATE.test(v)) {
        problems.push({ code: 'bad_metadata', problem: 'metadata holds a lone UTF-16 surrogate (not encodable as UTF-8)', facts: { file, key: `__metadata__.${k}`, expected: 'well-formed Unicode', got: 'a lone surrogate' } });
      }
    }
  }
  const entries: [string, TensorToWrite][] = [];
  for (const [name, t] of Object.entries(tensors)) {
    const facts = { file, tensor: name };
    if (name === '__metadata__') {
      problems.push({ code: 'bad_entry', problem: 'reserved tensor name', facts: { ...facts, expected: 'any name but __metadata__', got: name } });
      continue;
    }
    if (LONE_SURROGATE.test(name)) {
      problems.push({ code: 'bad_entry', problem: 'tensor name holds a lone UTF-16 surrogate (not encodable as UTF-8)', facts: { ...facts, expected: 'well-formed Unicode', got: 'a lone surrogate' } });
      continue;
    }
    if (!t || typeof t !== 'object' || !isSafeDType(t.dtype)) {
      problems.push({ code: 'bad_dtype', problem: 'unknown dtype', facts: { ...facts, expected: `one of ${DTYPE_LIST}`, got: String(t?.dtype) } });
      continue;
    }
    const numel = checkShape(t.shape, DEFAULT_LIMITS);
    if (typeof numel === 'string') {
      problems.push({ code: 'bad_shape', problem: numel, facts: { ...facts, expected: shapeExpected(DEFAULT_LIMITS), got: t.shape } });
      continue;
    }
    const bits = numel * BITS[t.dtype];
    if (bits % 8 !== 0) {
      problems.push({ code: 'size_mismatch', problem: 'elements do not fill whole bytes', facts: { ...facts, expected: 'a multiple of 8 bits', got: `${numel} × ${BITS[t.dtype]} bits` } });
      continue;
    }
    if (!ArrayBuffer.isView(t.data) || t.data.byteLength !== bits / 8) {
      problems.push({ code: 'size_mismatch', problem: 'data size does not match shape × dtype size', facts: { ...facts, expected: bits / 8, got: ArrayBuffer.isView(t.data) ? t.data.byteLength : typeName(t.data) } });
      continue;
    }
    entries.push([name, t]);
  }
  if (problems.length) throwAll(problems);

  const rank = (d: SafeDType) => SAFE_DTYPE_ORDER.indexOf(d);
  entries.sort(([an, a], [bn, b]) => rank(b.dtype) - rank(a.dtype) || compareUtf8(an, bn));
  // Built as text, not through a JS object: an object would move integer-like names ("9") to the front.
  const parts: string[] = [];
  if (metadata !== undefined) {
    const keys = Object.keys(metadata).sort(compareUtf8);
    parts.push(`"__metadata__":{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`).join(',')}}`);
  }
  let at = 0;
  for (const [name, t] of entries) {
    parts.push(`${JSON.stringify(name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${at},${at + t.data.byteLength}]}`);
    at += t.data.byteLength;
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
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
