import { PickleError } from '../errors.js';
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
/** At most this many zip entries: a checkpoint has one per storage, and each costs a directory record. */
const MAX_ENTRIES = 1 << 20;

interface ZipEntry {
  readonly name: string;
  readonly method: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly dataStart: number;
}

/** Parses the central directory (with Zip64 fields) and checks each local header. */
export function readZipDirectory(bytes: Uint8Array, file = 'checkpoint.bin'): Map<string, ZipEntry> {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bad = (detail: string, expected?: unknown, got?: unknown) => new PickleError('bad_zip', 'malformed zip', { file, expected, got, detail });
  const u16 = (at: number) => dv.getUint16(at, true);
  const u32 = (at: number) => dv.getUint32(at, true);
  const u64 = (at: number) => {
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
  if (count > MAX_ENTRIES) throw bad('too many entries', `≤ ${MAX_ENTRIES}`, count);
  if (cdOffset + cdSize > bytes.byteLength) throw bad('central directory out of range', `≤ ${bytes.byteLength}`, cdOffset + cdSize);

  const entries = new Map<string, ZipEntry>();
  const utf8 = new TextDecoder();
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    if (p + 46 > bytes.byteLength || u32(p) !== 0x02014b50) throw bad('bad central directory record', 'PK\\x01\\x02', `offset ${p}`);
    const flags = u16(p + 8);
    const method = u16(p + 10);
    let compressedSize = u32(p + 20);
    let size = u32(p + 24);
    const nameLen = u16(p + 28);
    const extraLen = u16(p + 30);
    const commentLen = u16(p + 32);
    let local = u32(p + 42);
    if (p + 46 + nameLen + extraLen + commentLen > bytes.byteLength) throw bad('central directory record out of range');
    const name = utf8.decode(bytes.subarray(p + 46, p + 46 + nameLen));
    // Zip64 extended information (extra id 0x0001): 64-bit values for the fields saturated above, in order.
    for (let e = p + 46 + nameLen; e + 4 <= p + 46 + nameLen + extraLen; ) {
      const id = u16(e);
      const len = u16(e + 2);
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
    const dataStart = local + 30 + u16(local + 26) + u16(local + 28);
    if (dataStart + compressedSize > bytes.byteLength) throw bad(`entry ${name} runs past the end`, `≤ ${bytes.byteLength}`, dataStart + compressedSize);
    entries.set(name, { name, method, compressedSize, size, dataStart });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

async function inflateRaw(data: Uint8Array, expected: number, file: string, name: string): Promise<Uint8Array> {
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
        await reader.cancel();
        throw new PickleError('bad_zip', 'deflated entry is larger than declared', { file, tensor: name, expected, got: `> ${expected}` });
      }
      out.set(value, at);
      at += value.byteLength;
    }
  } catch (e) {
    if (e instanceof PickleError) throw e;
    throw new PickleError('bad_zip', 'deflated entry is corrupt', { file, tensor: name, detail: e instanceof Error ? e.message : String(e), cause: e });
  }
  if (at !== expected) throw new PickleError('bad_zip', 'deflated entry has the wrong size', { file, tensor: name, expected, got: at });
  return out;
}

function entryStored(bytes: Uint8Array, e: ZipEntry, file: string): Uint8Array | undefined {
  if (e.method === 0) {
    if (e.compressedSize !== e.size) throw new PickleError('bad_zip', 'stored entry sizes differ', { file, tensor: e.name, expected: e.size, got: e.compressedSize });
    return bytes.subarray(e.dataStart, e.dataStart + e.size);
  }
  if (e.method === 8) return undefined;
  throw new PickleError('zip_unsupported', 'zip compression method not supported', { file, tensor: e.name, expected: '0 (stored) or 8 (deflate)', got: e.method });
}

async function entryBytes(bytes: Uint8Array, e: ZipEntry, file: string): Promise<Uint8Array> {
  return entryStored(bytes, e, file) ?? inflateRaw(bytes.subarray(e.dataStart, e.dataStart + e.compressedSize), e.size, file, e.name);
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

/** A tensor's bytes from its storage: a view when contiguous, else a copy gathered through the strides. */
function materialize(t: TensorRef, name: string, storage: Uint8Array, file: string): RawTensor {
  const dtype = STORAGE_DTYPES[t.storage.storageType];
  if (!dtype) {
    throw new PickleError('unsupported_dtype', 'storage type not supported', { file, tensor: name, expected: `one of ${Object.keys(STORAGE_DTYPES).join(', ')}`, got: t.storage.storageType });
  }
  const es = SAFE_DTYPES[dtype].bytes;
  const fail = (problem: string, expected: unknown, got: unknown) => new PickleError('bad_storage', problem, { file, tensor: name, expected, got });
  if (storage.byteLength < t.storage.numel * es) throw fail('storage entry shorter than its declared size', t.storage.numel * es, storage.byteLength);
  if (t.stride.length !== t.shape.length) throw fail('stride and size have different lengths', t.shape.length, t.stride.length);
  const numel = t.shape.reduce((a, b) => a * b, 1);
  if (!Number.isSafeInteger(numel * es)) throw fail('tensor too large', `≤ ${Number.MAX_SAFE_INTEGER} bytes`, t.shape);
  if (numel === 0) return { dtype, shape: t.shape, data: new Uint8Array(0) };
  // The last element touched must lie inside the storage.
  let last = t.offset;
  for (let i = 0; i < t.shape.length; i++) last += (t.shape[i]! - 1) * t.stride[i]!;
  if (last >= t.storage.numel) throw fail('tensor reaches past the end of its storage', `last element < ${t.storage.numel}`, last);

  const want = contiguousStrides(t.shape);
  const contiguous = t.shape.every((n, i) => n === 1 || t.stride[i] === want[i]);
  if (contiguous) return { dtype, shape: t.shape, data: storage.subarray(t.offset * es, (t.offset + numel) * es) };

  const out = new Uint8Array(numel * es);
  const idx = new Array<number>(t.shape.length).fill(0);
  let src = t.offset;
  for (let k = 0; k < numel; k++) {
    out.set(storage.subarray(src * es, src * es + es), k * es);
    // Odometer over the shape, last axis fastest, keeping `src` as Σ idx·stride.
    for (let d = t.shape.length - 1; d >= 0; d--) {
      if (++idx[d]! < t.shape[d]!) {
        src += t.stride[d]!;
        break;
      }
      src -= (t.shape[d]! - 1) * t.stride[d]!;
      idx[d] = 0;
    }
  }
  return { dtype, shape: t.shape, data: out };
}

function isTensor(v: PyValue): v is TensorRef {
  return typeof v === 'object' && v !== null && (v as TensorRef).kind === 'tensor';
}

interface Plan {
  archive: string;
  entries: Map<string, ZipEntry>;
}

function plan(bytes: Uint8Array, file: string): Plan {
  const entries = readZipDirectory(bytes, file);
  const pkl = [...entries.keys()].find((n) => /^[^/]+\/data\.pkl$/.test(n)) ?? [...entries.keys()].find((n) => n.endsWith('/data.pkl') || n === 'data.pkl');
  if (!pkl) throw new PickleError('missing_record', 'checkpoint has no data.pkl', { file, expected: '<archive>/data.pkl', got: `${entries.size} entries` });
  const archive = pkl.slice(0, pkl.length - 'data.pkl'.length);
  return { archive, entries };
}

function topTensors(value: PyValue, file: string): [string, TensorRef][] {
  if (!(value instanceof Map)) throw new PickleError('bad_pickle', 'checkpoint is not a dict of tensors', { file, expected: 'dict', got: Array.isArray(value) ? 'tuple/list' : typeof value });
  const out: [string, TensorRef][] = [];
  for (const [k, v] of value) if (typeof k === 'string' && isTensor(v)) out.push([k, v]);
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

/**
 * Reads every tensor of a torch zip checkpoint (a restricted unpickler: see pickle.ts). Tensor data are
 * views into `bytes` when the entry is stored and the tensor contiguous, copies otherwise.
 */
export async function readTorchZip(bytes: Uint8Array, opts: { file?: string } = {}): Promise<Map<string, RawTensor>> {
  const file = opts.file ?? 'checkpoint.bin';
  const p = plan(bytes, file);
  const cache = new Map<string, Uint8Array>();
  const get = async (e: ZipEntry) => {
    let b = cache.get(e.name);
    if (!b) cache.set(e.name, (b = await entryBytes(bytes, e, file)));
    return b;
  };
  const bo = p.entries.get(`${p.archive}byteorder`);
  const boBytes = bo && (await get(bo));
  checkByteorder(p, file, () => boBytes);
  const value = unpickle(await get(p.entries.get(`${p.archive}data.pkl`)!), { file: `${file} › ${p.archive}data.pkl` });
  const out = new Map<string, RawTensor>();
  for (const [name, t] of topTensors(value, file)) {
    out.set(name, materialize(t, name, await get(storageEntry(p, t.storage, name, file)), file));
  }
  return out;
}

/** Synchronous `readTorchZip` for checkpoints whose entries are all STORED (PickleError 'zip_unsupported' otherwise). */
export function readTorchZipSync(bytes: Uint8Array, opts: { file?: string } = {}): Map<string, RawTensor> {
  const file = opts.file ?? 'checkpoint.bin';
  const p = plan(bytes, file);
  const get = (e: ZipEntry): Uint8Array => {
    const b = entryStored(bytes, e, file);
    if (!b) throw new PickleError('zip_unsupported', 'deflated entry needs the async readTorchZip', { file, tensor: e.name, expected: 'stored', got: 'deflate' });
    return b;
  };
  checkByteorder(p, file, get);
  const value = unpickle(get(p.entries.get(`${p.archive}data.pkl`)!), { file: `${file} › ${p.archive}data.pkl` });
  const out = new Map<string, RawTensor>();
  for (const [name, t] of topTensors(value, file)) out.set(name, materialize(t, name, get(storageEntry(p, t.storage, name, file)), file));
  return out;
}
