import { PeftError, PickleError } from '../errors.js';
import { ByteBudget, resolveLimits, type LoadLimits } from '../limits.js';
import { unpickle, type PyValue, type StorageRef, type TensorRef } from './pickle.js';
import { SAFE_DTYPES, type SafeDType } from './safetensors.js';

/**
 * PyTorch ≥ 1.6 checkpoints (`torch.save`, e.g. `adapter_model.bin`): a zip holding `<archive>/data.pkl`
 * (the pickled state dict) and one entry `<archive>/data/<key>` per storage. Entries are normally STORED
 * (PyTorch's writer never compresses them); DEFLATE is decoded with DecompressionStream('deflate-raw'),
 * which is why `readTorchZip` is async. Zip layout: PKWARE APPNOTE.TXT §4.3.
 */

export interface RawTensor {
  readonly dtype: SafeDType;
  readonly shape: readonly number[];
  /** Contiguous row-major little-endian bytes (a view into the zip when the tensor is contiguous there). */
  readonly data: Uint8Array;
}

/** torch storage classes → safetensors dtypes. */
const STORAGE_DTYPES: Record<string, SafeDType> = {
  DoubleStorage: 'F64',
  FloatStorage: 'F32',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
};

/** The end-of-central-directory record sits in the last 22 + 65535 bytes (its comment is ≤ 65535 bytes). */
const EOCD_SEARCH_BYTES = 22 + 0xffff;

interface ZipEntry {
  readonly name: string;
  readonly method: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly dataStart: number;
  /** CRC-32 of the uncompressed bytes, from the central directory. */
  readonly crc: number;
}

export interface TorchZipOptions {
  /** Name used in errors. */
  file?: string;
  /** Caps (entries, tensors, rank, elements, inflate ratio, bytes); defaults DEFAULT_LIMITS. */
  limits?: Partial<LoadLimits>;
}

/**
 * Parses the central directory (with Zip64 fields) and checks each local header. Every field read is bounds
 * checked first, every offset and size is checked against the file, and a declared size is checked against
 * the inflate-ratio cap before anything is allocated for it.
 */
export function readZipDirectory(bytes: Uint8Array, file = 'checkpoint.bin', limits?: Partial<LoadLimits>): Map<string, ZipEntry> {
  const lim = resolveLimits(limits);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bad = (detail: string, expected?: unknown, got?: unknown) => new PickleError('bad_zip', 'malformed zip', { file, expected, got, detail });
  const inFile = (at: number, n: number, what: string) => {
    if (!(at >= 0 && at + n <= bytes.byteLength)) throw bad(`${what} runs past the end of the file`, `≤ ${bytes.byteLength}`, at + n);
  };
  const u16 = (at: number) => (inFile(at, 2, 'field'), dv.getUint16(at, true));
  const u32 = (at: number) => (inFile(at, 4, 'field'), dv.getUint32(at, true));
  const u64 = (at: number) => {
    inFile(at, 8, 'field');
    const v = dv.getBigUint64(at, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad('64-bit field too large', `≤ ${Number.MAX_SAFE_INTEGER}`, v.toString());
    return Number(v);
  };

  if (bytes.byteLength < 22 || u32(0) !== 0x04034b50) {
    const legacy = bytes.byteLength > 2 && bytes[0] === 0x80; // a bare pickle: torch.save before 1.6, or _use_new_zipfile_serialization=False
    throw new PickleError('not_a_zip', 'not a PyTorch zip checkpoint', {
      file,
      expected: 'a zip (PK\\x03\\x04)',
      got: legacy ? 'a bare pickle (legacy torch.save format)' : `${bytes.byteLength} bytes starting ${[...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ')}`,
    });
  }
  let eocd = -1;
  for (let i = bytes.byteLength - 22; i >= Math.max(0, bytes.byteLength - EOCD_SEARCH_BYTES); i--) {
    if (u32(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw bad('no end-of-central-directory record');
  let count = u16(eocd + 10);
  let cdSize = u32(eocd + 12);
  let cdOffset = u32(eocd + 16);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    // Zip64: a locator just before the EOCD points at the Zip64 EOCD record.
    const loc = eocd - 20;
    if (loc < 0 || u32(loc) !== 0x07064b50) throw bad('Zip64 locator missing');
    const rec = u64(loc + 8);
    if (rec + 56 > bytes.byteLength || u32(rec) !== 0x06064b50) throw bad('Zip64 end record missing');
    count = u64(rec + 32);
    cdSize = u64(rec + 40);
    cdOffset = u64(rec + 48);
  }
  if (count > lim.maxZipEntries) throw new PickleError('too_large', 'too many zip entries', { file, expected: `≤ ${lim.maxZipEntries} (maxZipEntries)`, got: count });
  if (cdOffset + cdSize > bytes.byteLength) throw bad('central directory out of range', `≤ ${bytes.byteLength}`, cdOffset + cdSize);
  // Each record takes ≥ 46 bytes: a count the directory cannot hold is a lie, refused before looping over it.
  if (count * 46 > cdSize) throw bad('entry count larger than the central directory holds', `≤ ${Math.floor(cdSize / 46)}`, count);

  const entries = new Map<string, ZipEntry>();
  const utf8 = new TextDecoder();
  const cdEnd = cdOffset + cdSize;
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cdEnd || u32(p) !== 0x02014b50) throw bad('bad central directory record', 'PK\\x01\\x02', `offset ${p}`);
    const flags = u16(p + 8);
    const method = u16(p + 10);
    const crc = u32(p + 16);
    let compressedSize = u32(p + 20);
    let size = u32(p + 24);
    const nameLen = u16(p + 28);
    const extraLen = u16(p + 30);
    const commentLen = u16(p + 32);
    let local = u32(p + 42);
    if (p + 46 + nameLen + extraLen + commentLen > cdEnd) throw bad('central directory record out of range', `≤ ${cdEnd}`, p + 46 + nameLen + extraLen + commentLen);
    const name = utf8.decode(bytes.subarray(p + 46, p + 46 + nameLen));
    if (entries.has(name)) throw bad(`entry ${name} appears twice`, 'unique entry names', `two ${name}`);
    // Zip64 extended information (extra id 0x0001): 64-bit values for the fields saturated above, in order.
    const extraEnd = p + 46 + nameLen + extraLen;
    for (let e = p + 46 + nameLen; e + 4 <= extraEnd; ) {
      const id = u16(e);
      const len = u16(e + 2);
      if (e + 4 + len > extraEnd) throw bad(`extra field of ${name} runs past its record`, `≤ ${extraEnd - e - 4} bytes`, len);
      if (id === 0x0001) {
        let q = e + 4;
        if (size === 0xffffffff && q + 8 <= e + 4 + len) (size = u64(q)), (q += 8);
        if (compressedSize === 0xffffffff && q + 8 <= e + 4 + len) (compressedSize = u64(q)), (q += 8);
        if (local === 0xffffffff && q + 8 <= e + 4 + len) local = u64(q);
      }
      e += 4 + len;
    }
    if (flags & 1) throw new PickleError('zip_unsupported', 'encrypted zip entry', { file, tensor: name, expected: 'unencrypted', got: 'encrypted' });
    if (local + 30 > bytes.byteLength || u32(local) !== 0x04034b50) throw bad('bad local header', 'PK\\x03\\x04', `offset ${local}`);
    const localNameLen = u16(local + 26);
    const dataStart = local + 30 + localNameLen + u16(local + 28);
    if (dataStart + compressedSize > bytes.byteLength) throw bad(`entry ${name} runs past the end`, `≤ ${bytes.byteLength}`, dataStart + compressedSize);
    // Another reader may trust the local header: both must name the same entry.
    if (localNameLen !== nameLen || utf8.decode(bytes.subarray(local + 30, local + 30 + localNameLen)) !== name) throw bad(`local header of ${name} names another entry`);
    if (method === 8 && size > Math.max(compressedSize, 1) * lim.maxInflateRatio) {
      throw new PickleError('too_large', 'deflated entry declares more bytes than the inflate-ratio cap allows', {
        file,
        tensor: name,
        expected: `≤ ${Math.max(compressedSize, 1) * lim.maxInflateRatio} bytes (${compressedSize} compressed bytes × maxInflateRatio ${lim.maxInflateRatio})`,
        got: size,
      });
    }
    entries.set(name, { name, method, compressedSize, size, dataStart, crc });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/** CRC-32 (IEEE 802.3, reflected 0xEDB88320), slice-by-4 tables: the zip entry checksum (APPNOTE §4.4.7). */
const CRC_TABLES = (() => {
  const t = new Uint32Array(4 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) for (let k = 1; k < 4; k++) t[k * 256 + n] = (t[(k - 1) * 256 + n]! >>> 8) ^ t[t[(k - 1) * 256 + n]! & 0xff]!;
  return t;
})();

export function crc32(b: Uint8Array): number {
  const t = CRC_TABLES;
  let c = 0xffffffff;
  let i = 0;
  for (const n4 = b.length - (b.length % 4); i < n4; i += 4) {
    c ^= b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24);
    c = t[768 + (c & 0xff)]! ^ t[512 + ((c >>> 8) & 0xff)]! ^ t[256 + ((c >>> 16) & 0xff)]! ^ t[c >>> 24]!;
  }
  for (; i < b.length; i++) c = t[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function checkCrc(b: Uint8Array, e: ZipEntry, file: string): Uint8Array {
  const got = crc32(b);
  if (got !== e.crc) {
    throw new PickleError('bad_zip', 'entry checksum mismatch (CRC-32)', { file, tensor: e.name, expected: `0x${e.crc.toString(16).padStart(8, '0')}`, got: `0x${got.toString(16).padStart(8, '0')}` });
  }
  return b;
}

/** Inflates one entry into exactly `e.size` bytes; the size was checked against the ratio cap and is taken from the budget first. */
async function inflateRaw(data: Uint8Array, e: ZipEntry, file: string, budget: ByteBudget): Promise<Uint8Array> {
  const expected = e.size;
  const name = e.name;
  try {
    budget.take(expected, `${file} › ${name}`);
  } catch (x) {
    throw new PickleError('too_large', 'deflated entry exceeds the byte budget of this load', { file, tensor: name, expected: `≤ ${budget.remaining} bytes (maxTotalBytes)`, got: expected, cause: x });
  }
  const out = new Uint8Array(expected);
  let at = 0;
  try {
    const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new DecompressionStream('deflate-raw'));
    const reader = stream.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      // The declared size bounds the allocation: a zip bomb stops here.
      if (at + value.byteLength > expected) {
        await reader.cancel().catch(() => {});
        throw new PickleError('bad_zip', 'deflated entry is larger than declared', { file, tensor: name, expected, got: `> ${expected}` });
      }
      out.set(value, at);
      at += value.byteLength;
    }
  } catch (x) {
    if (x instanceof PickleError) throw x;
    throw new PickleError('bad_zip', 'deflated entry is corrupt', { file, tensor: name, detail: x instanceof Error ? x.message : String(x), cause: x });
  }
  if (at !== expected) throw new PickleError('bad_zip', 'deflated entry has the wrong size', { file, tensor: name, expected, got: at });
  return checkCrc(out, e, file);
}

function entryStored(bytes: Uint8Array, e: ZipEntry, file: string): Uint8Array | undefined {
  if (e.method === 0) {
    if (e.compressedSize !== e.size) throw new PickleError('bad_zip', 'stored entry sizes differ', { file, tensor: e.name, expected: e.size, got: e.compressedSize });
    return checkCrc(bytes.subarray(e.dataStart, e.dataStart + e.size), e, file);
  }
  if (e.method === 8) return undefined;
  throw new PickleError('zip_unsupported', 'zip compression method not supported', { file, tensor: e.name, expected: '0 (stored) or 8 (deflate)', got: e.method });
}

async function entryBytes(bytes: Uint8Array, e: ZipEntry, file: string, budget: ByteBudget): Promise<Uint8Array> {
  return entryStored(bytes, e, file) ?? inflateRaw(bytes.subarray(e.dataStart, e.dataStart + e.compressedSize), e, file, budget);
}

/** Row-major strides for a shape. */
function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/**
 * A tensor's bytes from its storage: a view when contiguous, else a copy gathered through the strides.
 * Before anything is allocated: rank, element count (maxElements, non-zero dims included), stride count, the
 * storage's declared size against its entry, and the furthest element against the storage. A copy that is
 * larger than its storage can only come from overlapping strides (stride 0: torch's `expand`); it is allowed
 * up to maxInflateRatio × the storage's bytes and taken from the byte budget, so 523 bytes of pickle cannot
 * ask for a 1 GiB copy.
 */
function materialize(t: TensorRef, name: string, storage: Uint8Array, file: string, lim: Readonly<LoadLimits>, budget: ByteBudget): RawTensor {
  const dtype = Object.prototype.hasOwnProperty.call(STORAGE_DTYPES, t.storage.storageType) ? STORAGE_DTYPES[t.storage.storageType] : undefined;
  if (!dtype) {
    throw new PickleError('unsupported_dtype', 'storage type not supported', { file, tensor: name, expected: `one of ${Object.keys(STORAGE_DTYPES).join(', ')}`, got: t.storage.storageType });
  }
  const es = SAFE_DTYPES[dtype].bytes;
  const fail = (problem: string, expected: unknown, got: unknown) => new PickleError('bad_storage', problem, { file, tensor: name, expected, got });
  if (t.shape.length > lim.maxRank) throw fail('too many dimensions', `≤ ${lim.maxRank} (maxRank)`, t.shape.length);
  if (t.stride.length !== t.shape.length) throw fail('stride and size have different lengths', t.shape.length, t.stride.length);
  if (!Number.isSafeInteger(t.storage.numel * es) || storage.byteLength < t.storage.numel * es) throw fail('storage entry shorter than its declared size', t.storage.numel * es, storage.byteLength);
  let numel = 1;
  let nonzero = 1;
  for (const n of t.shape) {
    numel *= n;
    if (n) nonzero *= n;
  }
  if (nonzero > lim.maxElements) {
    throw new PickleError('too_large', 'tensor has too many elements', { file, tensor: name, expected: `≤ ${lim.maxElements} (maxElements)`, got: t.shape });
  }
  if (numel === 0) return { dtype, shape: t.shape, data: new Uint8Array(0) };
  // The last element touched must lie inside the storage.
  let last = t.offset;
  for (let i = 0; i < t.shape.length; i++) last += (t.shape[i]! - 1) * t.stride[i]!;
  if (last >= t.storage.numel) throw fail('tensor reaches past the end of its storage', `last element < ${t.storage.numel}`, last);

  const want = contiguousStrides(t.shape);
  const contiguous = t.shape.every((n, i) => n === 1 || t.stride[i] === want[i]);
  if (contiguous) return { dtype, shape: t.shape, data: storage.subarray(t.offset * es, (t.offset + numel) * es) };

  const bytes = numel * es;
  const storageBytes = Math.max(t.storage.numel * es, 1);
  if (bytes > storageBytes * lim.maxInflateRatio) {
    throw new PickleError('too_large', 'strided view repeats its storage more than the inflate-ratio cap allows', {
      file,
      tensor: name,
      expected: `≤ ${storageBytes * lim.maxInflateRatio} bytes (${storageBytes} storage bytes × maxInflateRatio ${lim.maxInflateRatio})`,
      got: bytes,
      detail: `shape [${t.shape.join(', ')}], stride [${t.stride.join(', ')}]`,
    });
  }
  try {
    budget.take(bytes, `${file} › ${name}`);
  } catch (x) {
    throw new PickleError('too_large', 'strided copy exceeds the byte budget of this load', { file, tensor: name, expected: `≤ ${budget.remaining} bytes (maxTotalBytes)`, got: bytes, cause: x });
  }
  return { dtype, shape: t.shape, data: gather(t, storage, es, numel) };
}

/** Copies a strided view into fresh row-major bytes, a contiguous trailing run at a time. */
function gather(t: TensorRef, storage: Uint8Array, es: number, numel: number): Uint8Array {
  const out = new Uint8Array(numel * es);
  // Trailing dims that are contiguous in the storage form one run copied with a single `set`.
  let inner = t.shape.length;
  let run = 1;
  while (inner > 0 && t.stride[inner - 1] === run) run *= t.shape[--inner]!;
  const outer = t.shape.slice(0, inner);
  const stride = t.stride.slice(0, inner);
  const idx = new Array<number>(outer.length).fill(0);
  const runBytes = run * es;
  let src = t.offset;
  for (let k = 0; k < numel; k += run) {
    const from = src * es;
    if (runBytes === es) for (let b = 0; b < es; b++) out[k * es + b] = storage[from + b]!;
    else out.set(storage.subarray(from, from + runBytes), k * es);
    // Odometer over the outer dims, last fastest, keeping `src` as Σ idx·stride.
    for (let d = outer.length - 1; d >= 0; d--) {
      if (++idx[d]! < outer[d]!) {
        src += stride[d]!;
        break;
      }
      src -= (outer[d]! - 1) * stride[d]!;
      idx[d] = 0;
    }
  }
  return out;
}

function isTensor(v: PyValue): v is TensorRef {
  return typeof v === 'object' && v !== null && (v as TensorRef).kind === 'tensor';
}

interface Plan {
  archive: string;
  entries: Map<string, ZipEntry>;
}

function plan(bytes: Uint8Array, file: string, lim: Readonly<LoadLimits>): Plan {
  const entries = readZipDirectory(bytes, file, lim);
  const pkls = [...entries.keys()].filter((n) => n === 'data.pkl' || n.endsWith('/data.pkl'));
  const top = pkls.filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  const chosen = top.length ? top : pkls;
  if (!chosen.length) throw new PickleError('missing_record', 'checkpoint has no data.pkl', { file, expected: '<archive>/data.pkl', got: `${entries.size} entries` });
  // Two state dicts in one file: which one is "the" checkpoint depends on the reader. Refuse.
  if (chosen.length > 1) throw new PickleError('bad_zip', 'checkpoint has more than one data.pkl', { file, expected: 'one <archive>/data.pkl', got: chosen.slice(0, 4) });
  const pkl = chosen[0]!;
  const archive = pkl.slice(0, pkl.length - 'data.pkl'.length);
  return { archive, entries };
}

function topTensors(value: PyValue, file: string, lim: Readonly<LoadLimits>): [string, TensorRef][] {
  if (!(value instanceof Map)) throw new PickleError('bad_pickle', 'checkpoint is not a dict of tensors', { file, expected: 'dict', got: Array.isArray(value) ? 'tuple/list' : typeof value });
  const out: [string, TensorRef][] = [];
  for (const [k, v] of value) if (typeof k === 'string' && isTensor(v)) out.push([k, v]);
  if (out.length > lim.maxTensors) throw new PickleError('too_large', 'too many tensors in one checkpoint', { file, expected: `≤ ${lim.maxTensors} (maxTensors)`, got: out.length });
  return out;
}

function checkByteorder(p: Plan, file: string, get: (e: ZipEntry) => Uint8Array | undefined): void {
  const e = p.entries.get(`${p.archive}byteorder`);
  const b = e && get(e);
  if (b && new TextDecoder().decode(b).trim() !== 'little') {
    throw new PickleError('zip_unsupported', 'big-endian checkpoint', { file, expected: 'little', got: new TextDecoder().decode(b).trim() });
  }
}

function storageEntry(p: Plan, ref: StorageRef, name: string, file: string): ZipEntry {
  const e = p.entries.get(`${p.archive}data/${ref.key}`);
  if (!e) throw new PickleError('missing_record', 'storage record missing', { file, tensor: name, expected: `${p.archive}data/${ref.key}`, got: 'absent' });
  return e;
}

/** Turns a stray engine error (a RangeError from a field we failed to bound) into a typed one: never untyped. */
function typed<T>(file: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof PeftError) throw e;
    throw new PickleError('bad_zip', 'malformed checkpoint', { file, detail: e instanceof Error ? e.message : String(e), cause: e });
  }
}

/**
 * Reads every tensor of a torch zip checkpoint (a restricted unpickler: see pickle.ts). Tensor data are
 * views into `bytes` when the entry is stored and the tensor contiguous, copies otherwise. Every entry's
 * CRC-32 is checked; caps come from `opts.limits` (DEFAULT_LIMITS).
 */
export async function readTorchZip(bytes: Uint8Array, opts: TorchZipOptions = {}): Promise<Map<string, RawTensor>> {
  const file = opts.file ?? 'checkpoint.bin';
  const lim = resolveLimits(opts.limits);
  const budget = new ByteBudget(lim.maxTotalBytes);
  const p = typed(file, () => plan(bytes, file, lim));
  const cache = new Map<string, Uint8Array>();
  const get = async (e: ZipEntry) => {
    let b = cache.get(e.name);
    if (!b) cache.set(e.name, (b = await entryBytes(bytes, e, file, budget)));
    return b;
  };
  const bo = p.entries.get(`${p.archive}byteorder`);
  const boBytes = bo && (await get(bo));
  checkByteorder(p, file, () => boBytes);
  const pkl = await get(p.entries.get(`${p.archive}data.pkl`)!);
  const value = typed(file, () => unpickle(pkl, { file: `${file} › ${p.archive}data.pkl` }));
  const out = new Map<string, RawTensor>();
  for (const [name, t] of typed(file, () => topTensors(value, file, lim))) {
    const storage = await get(storageEntry(p, t.storage, name, file));
    out.set(name, typed(file, () => materialize(t, name, storage, file, lim, budget)));
  }
  return out;
}

/** Synchronous `readTorchZip` for checkpoints whose entries are all STORED (PickleError 'zip_unsupported' otherwise). */
export function readTorchZipSync(bytes: Uint8Array, opts: TorchZipOptions = {}): Map<string, RawTensor> {
  const file = opts.file ?? 'checkpoint.bin';
  const lim = resolveLimits(opts.limits);
  const budget = new ByteBudget(lim.maxTotalBytes);
  return typed(file, () => {
    const p = plan(bytes, file, lim);
    const get = (e: ZipEntry): Uint8Array => {
      const b = entryStored(bytes, e, file);
      if (!b) throw new PickleError('zip_unsupported', 'deflated entry needs the async readTorchZip', { file, tensor: e.name, expected: 'stored', got: 'deflate' });
      return b;
    };
    checkByteorder(p, file, get);
    const value = unpickle(get(p.entries.get(`${p.archive}data.pkl`)!), { file: `${file} › ${p.archive}data.pkl` });
    const out = new Map<string, RawTensor>();
    for (const [name, t] of topTensors(value, file, lim)) out.set(name, materialize(t, name, get(storageEntry(p, t.storage, name, file)), file, lim, budget));
    return out;
  });
}
