import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PeftError, PickleError } from '../../src/errors.js';
import { unpickle } from '../../src/formats/pickle.js';
import { readTorchZip, readTorchZipSync } from '../../src/formats/torch-zip.js';
import { caught } from '../caught.js';

const T = { timeout: 5_000 };
const BIN = join(__dirname, '../fixtures/peft-real/t5-small-peft02-bin/adapter_model.bin');


// ── A tiny pickle assembler (opcodes from CPython's pickletools) ─────────────────────────────────────
const enc = new TextEncoder();
const u32 = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24];
const P = {
  proto: [0x80, 2],
  stop: [0x2e],
  mark: [0x28],
  emptyDict: [0x7d],
  emptyTuple: [0x29],
  tuple: [0x74],
  tuple1: [0x85],
  tuple2: [0x86],
  reduce: [0x52],
  binpersid: [0x51],
  setitems: [0x75],
  newfalse: [0x89],
  str: (s: string) => {
    const b = enc.encode(s);
    return [0x58, ...u32(b.length), ...b];
  },
  int: (n: number) => [0x4a, ...u32(n)],
  global: (module: string, name: string) => [0x63, ...enc.encode(`${module}\n${name}\n`)],
  stackGlobal: (module: string, name: string) => [...P.str(module), ...P.str(name), 0x93],
};
const pickle = (...parts: (number[] | number)[]) => new Uint8Array(parts.flat());

/** `OrderedDict()`, as torch writes the backward_hooks argument. */
const orderedDict = [...P.global('collections', 'OrderedDict'), ...P.emptyTuple, ...P.reduce];
const ints = (xs: number[]) => [...P.mark, ...xs.flatMap(P.int), ...P.tuple];

/** `name: _rebuild_tensor_v2(('storage', <type>, key, 'cpu', numel), offset, size, stride, False, OrderedDict())`. */
function tensorItem(name: string, o: { type?: string; key: string; numel: number; offset?: number; shape: number[]; stride: number[] }) {
  return [
    ...P.str(name),
    ...P.global('torch._utils', '_rebuild_tensor_v2'),
    ...P.mark,
    ...[...P.mark, ...P.str('storage'), ...P.global('torch', o.type ?? 'FloatStorage'), ...P.str(o.key), ...P.str('cpu'), ...P.int(o.numel), ...P.tuple, ...P.binpersid],
    ...P.int(o.offset ?? 0),
    ...ints(o.shape),
    ...ints(o.stride),
    ...P.newfalse,
    ...orderedDict,
    ...P.tuple,
    ...P.reduce,
  ];
}
const stateDict = (...items: number[][]) => pickle(P.proto, P.emptyDict, P.mark, ...items, P.setitems, P.stop);

// ── A tiny zip writer (STORED or DEFLATE), enough for our reader and Python's zipfile ───────────────
const CRC = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) c = CRC[(c ^ x) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
async function deflateRaw(b: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await new Response(new Blob([b as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new CompressionStream('deflate-raw'))).arrayBuffer());
}
async function zip(files: Record<string, Uint8Array>, deflate = false): Promise<Uint8Array> {
  const locals: number[] = [];
  const central: number[] = [];
  const u16 = (n: number) => [n & 0xff, n >>> 8];
  for (const [name, raw] of Object.entries(files)) {
    const data = deflate ? await deflateRaw(raw) : raw;
    const nameB = [...enc.encode(name)];
    const common = [...u16(20), ...u16(0), ...u16(deflate ? 8 : 0), ...u16(0), ...u16(0), ...u32(crc32(raw)), ...u32(data.length), ...u32(raw.length), ...u16(nameB.length), ...u16(0)];
    const offset = locals.length;
    locals.push(...u32(0x04034b50), ...common, ...nameB, ...data);
    central.push(...u32(0x02014b50), ...u16(20), ...common, ...u16(0), ...u16(0), ...u16(0), ...u32(0), ...u32(offset), ...nameB);
  }
  const n = Object.keys(files).length;
  const eocd = [...u32(0x06054b50), ...u16(0), ...u16(0), ...u16(n), ...u16(n), ...u32(central.length), ...u32(locals.length), ...u16(0)];
  return new Uint8Array([...locals, ...central, ...eocd]);
}
const f32bytes = (xs: number[]) => new Uint8Array(Float32Array.from(xs).buffer);
const ckpt = (pkl: Uint8Array, storages: Record<string, Uint8Array> = {}, deflate = false) =>
  zip({ 'archive/data.pkl': pkl, 'archive/byteorder': enc.encode('little'), ...Object.fromEntries(Object.entries(storages).map(([k, v]) => [`archive/data/${k}`, v])) }, deflate);

/**
 * The bytes of one STORED entry, found by scanning for its local header: independent of the reader under
 * test. PyTorch's writer puts sizes in a trailing data descriptor (flag bit 3), so the caller gives the size.
 */
function storedEntry(zipBytes: Uint8Array, name: string, size: number): Uint8Array {
  const dv = new DataView(zipBytes.buffer, zipBytes.byteOffset);
  const want = enc.encode(name);
  for (let p = 0; p + 30 < zipBytes.length; p++) {
    if (dv.getUint32(p, true) !== 0x04034b50) continue;
    const nameLen = dv.getUint16(p + 26, true);
    if (nameLen !== want.length || Buffer.compare(zipBytes.subarray(p + 30, p + 30 + nameLen), want) !== 0) continue;
    const start = p + 30 + nameLen + dv.getUint16(p + 28, true);
    return zipBytes.subarray(start, start + size);
  }
  throw new Error(`no entry ${name}`);
}

describe('torch zip: the real t5-small adapter_model.bin', () => {
  const bytes = new Uint8Array(readFileSync(BIN));
  it('72 F32 tensors with PEFT names and LoRA shapes', T, async () => {
    const m = await readTorchZip(bytes, { file: 'adapter_model.bin' });
    expect(m.size).toBe(72);
    for (const [name, t] of m) {
      expect(name).toMatch(/^base_model\.model\.(encoder|decoder)\.block\.\d+\.layer\.\d\.(SelfAttention|EncDecAttention)\.[qv]\.lora_[AB]\.weight$/);
      expect(t.dtype).toBe('F32');
      expect(t.shape).toEqual(name.includes('lora_A') ? [16, 512] : [512, 16]);
      expect(t.data.byteLength).toBe(16 * 512 * 4);
    }
    expect([...m.keys()].slice(0, 2)).toEqual([
      'base_model.model.encoder.block.0.layer.0.SelfAttention.q.lora_A.weight',
      'base_model.model.encoder.block.0.layer.0.SelfAttention.q.lora_B.weight',
    ]);
  });
  it('values equal the storage entries decoded straight from the zip', T, async () => {
    const m = await readTorchZip(bytes);
    // data.pkl lists storages '0', '1', … in tensor order (see pickletools.dis of the file).
    const names = [...m.keys()];
    for (const i of [0, 1, 2, 37, 71]) {
      const raw = storedEntry(bytes, `adapter_model/data/${i}`, 16 * 512 * 4);
      const t = m.get(names[i]!)!;
      const got = new Float32Array(t.data.slice().buffer);
      const want = new Float32Array(raw.slice().buffer);
      expect(got.length).toBe(want.length);
      expect(Buffer.compare(Buffer.from(t.data), Buffer.from(raw))).toBe(0);
      expect(Number.isFinite(got[0]!)).toBe(true);
    }
    expect(new Float32Array(m.get(names[0]!)!.data.slice(0, 16).buffer)).toEqual(
      Float32Array.from([-0.024766722694039345, 0.06513189524412155, -0.021961847320199013, 0.020004983991384506]),
    );
  });
  it('sync reader agrees (every entry is STORED); data are zero-copy views', T, async () => {
    const a = readTorchZipSync(bytes);
    const b = await readTorchZip(bytes);
    expect([...a.keys()]).toEqual([...b.keys()]);
    expect(a.values().next().value!.data.buffer).toBe(bytes.buffer);
  });
});

describe('torch zip: crafted checkpoints', () => {
  it('storage offset, shared storage and non-contiguous strides', T, async () => {
    const pkl = stateDict(
      tensorItem('a', { key: '0', numel: 6, shape: [2, 3], stride: [3, 1] }),
      tensorItem('aT', { key: '0', numel: 6, shape: [3, 2], stride: [1, 3] }), // a transposed view
      tensorItem('tail', { key: '0', numel: 6, offset: 4, shape: [2], stride: [1] }),
      tensorItem('col', { key: '0', numel: 6, offset: 1, shape: [2, 1], stride: [3, 7] }), // size-1 dim: stride ignored
      tensorItem('empty', { key: '0', numel: 6, shape: [0, 3], stride: [3, 1] }),
    );
    const m = await readTorchZip(await ckpt(pkl, { '0': f32bytes([0, 1, 2, 3, 4, 5]) }));
    const vals = (k: string) => [...new Float32Array(m.get(k)!.data.slice().buffer)];
    expect(vals('a')).toEqual([0, 1, 2, 3, 4, 5]);
    expect(vals('aT')).toEqual([0, 3, 1, 4, 2, 5]);
    expect(m.get('aT')!.shape).toEqual([3, 2]);
    expect(vals('tail')).toEqual([4, 5]);
    expect(vals('col')).toEqual([1, 4]);
    expect(vals('empty')).toEqual([]);
  });
  it('every storage class maps to its dtype; _rebuild_parameter unwraps', T, async () => {
    const types = { DoubleStorage: 'F64', HalfStorage: 'F16', BFloat16Storage: 'BF16', LongStorage: 'I64', IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8', ByteStorage: 'U8', BoolStorage: 'BOOL' };
    const size = { F64: 8, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 } as Record<string, number>;
    const items = Object.keys(types).map((t, i) => tensorItem(t, { type: t, key: String(i), numel: 2, shape: [2], stride: [1] }));
    const param = [...P.str('p'), ...P.global('torch._utils', '_rebuild_parameter'), ...P.mark, ...tensorItem('', { key: 'p', numel: 1, shape: [], stride: [] }).slice(P.str('').length), ...P.newfalse, ...orderedDict, ...P.tuple, ...P.reduce];
    const storages: Record<string, Uint8Array> = { p: f32bytes([7]) };
    Object.values(types).forEach((d, i) => (storages[String(i)] = new Uint8Array(2 * size[d]!).map((_, j) => j + 1)));
    const m = await readTorchZip(await ckpt(stateDict(...items, param), storages, true));
    for (const [t, d] of Object.entries(types)) expect([m.get(t)!.dtype, m.get(t)!.data.byteLength]).toEqual([d, 2 * size[d]!]);
    expect(m.get('p')).toMatchObject({ dtype: 'F32', shape: [] });
    expect(new Float32Array(m.get('p')!.data.slice().buffer)).toEqual(Float32Array.from([7]));
  });
  it('deflated entries need the async reader', T, async () => {
    const z = await ckpt(stateDict(tensorItem('a', { key: '0', numel: 2, shape: [2], stride: [1] })), { '0': f32bytes([1, 2]) }, true);
    expect([...new Float32Array((await readTorchZip(z)).get('a')!.data.slice().buffer)]).toEqual([1, 2]);
    expect(await caught(() => readTorchZipSync(z))).toMatchInlineSnapshot(`"PickleError zip_unsupported: deflated entry needs the async readTorchZip: expected stored, got deflate → at checkpoint.bin › archive/byteorder"`);
  });
});

describe('torch zip: refusals', () => {
  const malicious = async (pkl: Uint8Array) => caught(readTorchZip(await ckpt(pkl)));
  it("GLOBAL 'posix system' + REDUCE(('echo pwned',)) is refused, nothing runs", T, async () => {
    const pkl = pickle(P.proto, P.global('posix', 'system'), P.str('echo pwned'), P.tuple1, P.reduce, P.stop);
    expect(await malicious(pkl)).toMatchInlineSnapshot(`"PickleError forbidden_global: pickle refers to a global outside the allow-list: expected torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter, collections.OrderedDict or torch.*Storage, got posix.system → at checkpoint.bin › archive/data.pkl @ byte 2"`);
    try {
      await readTorchZip(await ckpt(pkl));
    } catch (e) {
      expect(e).toBeInstanceOf(PickleError);
      expect(e).toMatchObject({ code: 'forbidden_global', got: 'posix.system' });
    }
  });
  it('builtins.eval via STACK_GLOBAL is refused', T, async () => {
    expect(await malicious(pickle(P.proto, P.stackGlobal('builtins', 'eval'), P.str('1+1'), P.tuple1, P.reduce, P.stop))).toMatchInlineSnapshot(`"PickleError forbidden_global: pickle refers to a global outside the allow-list: expected torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter, collections.OrderedDict or torch.*Storage, got builtins.eval → at checkpoint.bin › archive/data.pkl @ byte 24"`);
  });
  it('INST, OBJ and NEWOBJ (__reduce__-style object building) are refused', T, async () => {
    const inst = pickle(P.proto, P.mark, P.str('echo pwned'), [0x69, ...enc.encode('os\nsystem\n')], P.stop);
    const obj = pickle(P.proto, P.mark, P.global('torch', 'FloatStorage'), [0x6f], P.stop);
    const newobj = pickle(P.proto, P.global('torch', 'FloatStorage'), P.emptyTuple, [0x81], P.stop);
    expect(await malicious(inst)).toMatchInlineSnapshot(`"PickleError forbidden_opcode: pickle opcode not allowed: expected an opcode torch.save uses for tensors, got INST → at checkpoint.bin › archive/data.pkl @ byte 18"`);
    expect(await malicious(obj)).toMatchInlineSnapshot(`"PickleError forbidden_opcode: pickle opcode not allowed: expected an opcode torch.save uses for tensors, got OBJ → at checkpoint.bin › archive/data.pkl @ byte 23"`);
    expect(await malicious(newobj)).toMatchInlineSnapshot(`"PickleError forbidden_opcode: pickle opcode not allowed: expected an opcode torch.save uses for tensors, got NEWOBJ → at checkpoint.bin › archive/data.pkl @ byte 23"`);
  });
  it('calling an allowed storage class is refused', T, async () => {
    expect(await malicious(pickle(P.proto, P.global('torch', 'FloatStorage'), P.emptyTuple, P.reduce, P.stop))).toMatchInlineSnapshot(`"PickleError forbidden_global: global may not be called: expected a tensor rebuild function, got torch.FloatStorage → at checkpoint.bin › archive/data.pkl @ byte 23"`);
  });
  it('a tensor reaching past its storage', T, async () => {
    const pkl = stateDict(tensorItem('w', { key: '0', numel: 6, shape: [4, 4], stride: [4, 1] }));
    expect(await caught(readTorchZip(await ckpt(pkl, { '0': f32bytes([0, 1, 2, 3, 4, 5]) })))).toMatchInlineSnapshot(`"PickleError bad_storage: tensor reaches past the end of its storage: expected last element < 6, got 15 → at checkpoint.bin › w"`);
  });
  it('a storage entry shorter than its numel', T, async () => {
    const pkl = stateDict(tensorItem('w', { key: '0', numel: 6, shape: [2], stride: [1] }));
    expect(await caught(readTorchZip(await ckpt(pkl, { '0': f32bytes([0, 1]) })))).toMatchInlineSnapshot(`"PickleError bad_storage: storage entry shorter than its declared size: expected 24, got 8 → at checkpoint.bin › w"`);
  });
  it('an unsupported storage type', T, async () => {
    const pkl = stateDict(tensorItem('w', { type: 'ComplexFloatStorage', key: '0', numel: 1, shape: [1], stride: [1] }));
    expect(await caught(readTorchZip(await ckpt(pkl, { '0': new Uint8Array(8) })))).toMatchInlineSnapshot(`"PickleError unsupported_dtype: storage type not supported: expected one of DoubleStorage, FloatStorage, HalfStorage, BFloat16Storage, LongStorage, IntStorage, ShortStorage, CharStorage, ByteStorage, BoolStorage, got ComplexFloatStorage → at checkpoint.bin › w"`);
  });
  it('missing storage record, missing data.pkl', T, async () => {
    const pkl = stateDict(tensorItem('w', { key: '9', numel: 1, shape: [1], stride: [1] }));
    expect(await caught(readTorchZip(await ckpt(pkl)))).toMatchInlineSnapshot(`"PickleError missing_record: storage record missing: expected archive/data/9, got absent → at checkpoint.bin › w"`);
    expect(await caught(readTorchZip(await zip({ 'archive/other.pkl': pkl })))).toMatchInlineSnapshot(`"PickleError missing_record: checkpoint has no data.pkl: expected <archive>/data.pkl, got 1 entries → at checkpoint.bin"`);
  });
  it('not a zip; a legacy bare pickle; a zip without its directory', T, async () => {
    expect(await caught(readTorchZip(enc.encode('hello world, not a zip at all')))).toMatchInlineSnapshot(`"PickleError not_a_zip: not a PyTorch zip checkpoint: expected a zip (PK\\x03\\x04), got 29 bytes starting 68 65 6c 6c → at checkpoint.bin"`);
    expect(await caught(readTorchZip(pickle(P.proto, P.emptyDict, P.stop, new Array(30).fill(0))))).toMatchInlineSnapshot(`"PickleError not_a_zip: not a PyTorch zip checkpoint: expected a zip (PK\\x03\\x04), got a bare pickle (legacy torch.save format) → at checkpoint.bin"`);
    const z = await ckpt(stateDict());
    expect(await caught(readTorchZip(z.subarray(0, z.length - 22)))).toMatchInlineSnapshot(`"PickleError bad_zip: malformed zip (no end-of-central-directory record) → at checkpoint.bin"`);
  });
  it('a big-endian checkpoint', T, async () => {
    const z = await zip({ 'archive/data.pkl': stateDict(), 'archive/byteorder': enc.encode('big') });
    expect(await caught(readTorchZip(z))).toMatchInlineSnapshot(`"PickleError zip_unsupported: big-endian checkpoint: expected little, got big → at checkpoint.bin"`);
  });
  it('a top level that is not a dict', T, async () => {
    expect(await caught(readTorchZip(await ckpt(pickle(P.proto, P.int(3), P.stop))))).toMatchInlineSnapshot(`"PickleError bad_pickle: checkpoint is not a dict of tensors: expected dict, got number → at checkpoint.bin"`);
  });
  it('truncated and malformed pickles', T, () => {
    const f = (b: Uint8Array) => caught(() => unpickle(b, { file: 'data.pkl' }));
    return Promise.all([
      expect(f(pickle(P.proto, 0x58, ...u32(1000), 0x41))).resolves.toMatchInlineSnapshot(`"PickleError bad_pickle: malformed pickle: expected 1000 more bytes, got 1 (truncated) → at data.pkl @ byte 2"`),
      expect(f(pickle(P.proto, P.emptyDict))).resolves.toMatchInlineSnapshot(`"PickleError bad_pickle: malformed pickle: expected 1 more bytes, got 0 (truncated) → at data.pkl @ byte 3"`),
      expect(f(pickle(P.proto, P.setitems, P.stop))).resolves.toMatchInlineSnapshot(`"PickleError bad_pickle: malformed pickle (no MARK on the stack) → at data.pkl @ byte 2"`),
      expect(f(pickle(P.proto, 0x68, 5, P.stop))).resolves.toMatchInlineSnapshot(`"PickleError bad_pickle: malformed pickle: expected a stored memo key, got 5 (memo key not found) → at data.pkl @ byte 2"`),
    ]);
  });
  it('random corruption of the real checkpoint gives typed errors or a result, never a crash', T, async () => {
    const good = new Uint8Array(readFileSync(BIN));
    const pklAt = storedEntry(good, 'adapter_model/data.pkl', 11731).byteOffset - good.byteOffset; // size from `unzip -l`
    let seed = 11;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    for (let k = 0; k < 200; k++) {
      const b = new Uint8Array(good);
      for (let j = 0; j < 3; j++) b[pklAt + Math.floor(rnd() * 11731)] = Math.floor(rnd() * 256);
      try {
        readTorchZipSync(b);
      } catch (e) {
        expect(e).toBeInstanceOf(PickleError);
      }
    }
  });
});

// ── Hostile checkpoints (issue 8 items 2–6 and "Also"): each is refused by a cap or a bound, with a typed error ──
interface RawEntry {
  name: string;
  data: Uint8Array; // bytes as stored
  method?: number;
  crc?: number;
  /** Central-directory size fields (default data.length); 0xffffffff defers to the Zip64 extra. */
  size?: number;
  compressedSize?: number;
  /** Central-directory extra field bytes. */
  extra?: number[];
}
/** A zip whose every field the test chooses (APPNOTE §4.3.7 local header, §4.3.12 central header, §4.3.16 EOCD). */
function rawZip(entries: RawEntry[]): Uint8Array {
  const u16 = (n: number) => [n & 0xff, n >>> 8];
  const locals: number[] = [];
  const central: number[] = [];
  for (const e of entries) {
    const nameB = [...enc.encode(e.name)];
    const crc = e.crc ?? crc32(e.data);
    const offset = locals.length;
    locals.push(...u32(0x04034b50), ...u16(20), ...u16(0), ...u16(e.method ?? 0), ...u16(0), ...u16(0), ...u32(crc), ...u32(e.data.length), ...u32(e.data.length), ...u16(nameB.length), ...u16(0), ...nameB, ...e.data);
    const extra = e.extra ?? [];
    central.push(...u32(0x02014b50), ...u16(45), ...u16(20), ...u16(0), ...u16(e.method ?? 0), ...u16(0), ...u16(0), ...u32(crc), ...u32(e.compressedSize ?? e.data.length), ...u32(e.size ?? e.data.length));
    central.push(...u16(nameB.length), ...u16(extra.length), ...u16(0), ...u16(0), ...u16(0), ...u32(0), ...u32(offset), ...nameB, ...extra);
  }
  const eocd = [...u32(0x06054b50), ...u16(0), ...u16(0), ...u16(entries.length), ...u16(entries.length), ...u32(central.length), ...u32(locals.length), ...u16(0)];
  return new Uint8Array([...locals, ...central, ...eocd]);
}
const u64le = (n: bigint) => Array.from({ length: 8 }, (_, i) => Number((n >> BigInt(8 * i)) & 0xffn));
const oneTensor = (o: Parameters<typeof tensorItem>[1]) => stateDict(tensorItem('w', o));

describe('torch zip: hostile checkpoints get typed errors before any large allocation', () => {
  it('a huge shape with zero strides (4·10¹² elements) is refused by maxElements, not allocated (issue 8 #2)', T, async () => {
    const z = await ckpt(oneTensor({ key: '0', numel: 1, shape: [2_000_000, 2_000_000], stride: [0, 0] }), { '0': f32bytes([1]) });
    expect(await caught(readTorchZip(z))).toMatchInlineSnapshot(`"PickleError too_large: tensor has too many elements: expected ≤ 4294967296 (maxElements), got [2000000,2000000] → at checkpoint.bin › w"`);
  });
  it('a 16384² view of one element (523 bytes of pickle) is refused by the inflate-ratio cap, not copied (issue 8 #3)', T, async () => {
    const z = await ckpt(oneTensor({ key: '0', numel: 1, shape: [16384, 16384], stride: [0, 0] }), { '0': f32bytes([1]) });
    expect(await caught(readTorchZip(z))).toMatchInlineSnapshot(`"PickleError too_large: strided view repeats its storage more than the inflate-ratio cap allows: expected ≤ 128 bytes (4 storage bytes × maxInflateRatio 32), got 1073741824 (shape [16384, 16384], stride [0, 0]) → at checkpoint.bin › w"`);
    // The same view under a budget smaller than its copy: the budget says no first when the ratio allows it.
    expect(await caught(readTorchZip(z, { limits: { maxInflateRatio: 2 ** 40, maxTotalBytes: 2 ** 20 } }))).toMatchInlineSnapshot(`"PickleError too_large: strided copy exceeds the byte budget of this load: expected ≤ 1048576 bytes (maxTotalBytes), got 1073741824 → at checkpoint.bin › w"`);
  });
  it('a modest expand (stride 0) within the cap is copied, row by row, as torch would materialise it', T, async () => {
    // x = torch.tensor([1., 2., 3.]).expand(4, 3): stride (0, 1); contiguous() repeats the row 4 times.
    const m = await readTorchZip(await ckpt(oneTensor({ key: '0', numel: 3, shape: [4, 3], stride: [0, 1] }), { '0': f32bytes([1, 2, 3]) }));
    expect([...new Float32Array(m.get('w')!.data.slice().buffer)]).toEqual([1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3]);
    // x.expand(3, 2).t() style: stride (1, 0) on a 2-element storage → [[a, a, a], [b, b, b]].
    const t = await readTorchZip(await ckpt(oneTensor({ key: '0', numel: 2, shape: [2, 3], stride: [1, 0] }), { '0': f32bytes([5, 6]) }));
    expect([...new Float32Array(t.get('w')!.data.slice().buffer)]).toEqual([5, 5, 5, 6, 6, 6]);
  });
  it('more dimensions than maxRank', T, async () => {
    const z = await ckpt(oneTensor({ key: '0', numel: 1, shape: new Array(40).fill(1), stride: new Array(40).fill(1) }), { '0': f32bytes([1]) });
    expect(await caught(readTorchZip(z))).toMatchInlineSnapshot(`"PickleError bad_storage: too many dimensions: expected ≤ 32 (maxRank), got 40 → at checkpoint.bin › w"`);
  });
  it('a Zip64 size claiming 2⁴⁰ bytes is refused before allocating (issue 8 #4)', T, async () => {
    const z = rawZip([{ name: 'archive/data.pkl', data: new Uint8Array(100), method: 8, size: 0xffffffff, extra: [0x01, 0x00, 8, 0, ...u64le(2n ** 40n)] }]);
    expect(await caught(readTorchZip(z))).toMatchInlineSnapshot(`"PickleError too_large: deflated entry declares more bytes than the inflate-ratio cap allows: expected ≤ 3200 bytes (100 compressed bytes × maxInflateRatio 32), got 1099511627776 → at checkpoint.bin › archive/data.pkl"`);
  });
  it('a Zip64 extra field running past its record is a bounds error, not an out-of-bounds read (issue 8 #5)', T, async () => {
    const z = rawZip([{ name: 'archive/data.pkl', data: stateDict(), size: 0xffffffff, extra: [0x01, 0x00, 0xff, 0xff, 0, 0, 0, 0] }]);
    expect(await caught(readTorchZip(z))).toMatchInlineSnapshot(`"PickleError bad_zip: malformed zip: expected ≤ 4 bytes, got 65535 (extra field of archive/data.pkl runs past its record) → at checkpoint.bin"`);
    // At the very end of the file: the extra's length field itself would be read past the end.
    const cut = rawZip([{ name: 'archive/data.pkl', data: stateDict(), extra: [0x01, 0x00, 0xff, 0xff] }]);
    expect(await caught(readTorchZip(cut))).toMatchInlineSnapshot(`"PickleError bad_zip: malformed zip: expected ≤ 0 bytes, got 65535 (extra field of archive/data.pkl runs past its record) → at checkpoint.bin"`);
  });
  it('an honest deflate bomb (4 MiB of zeros in ~4 KiB) is refused by the ratio cap before inflating (issue 8 #6)', T, async () => {
    const zeros = new Uint8Array(4 << 20);
    const z = await zip({ 'archive/data.pkl': stateDict(tensorItem('w', { key: '0', numel: 1 << 20, shape: [1 << 20], stride: [1] })), 'archive/data/0': zeros }, true);
    expect(await caught(readTorchZip(z))).toMatchInlineSnapshot(`"PickleError too_large: deflated entry declares more bytes than the inflate-ratio cap allows: expected ≤ 130560 bytes (4080 compressed bytes × maxInflateRatio 32), got 4194304 → at checkpoint.bin › archive/data/0"`);
    // Raising the cap lets it through: the cap is the only thing that refused it.
    const m = await readTorchZip(z, { limits: { maxInflateRatio: 2000 } });
    expect(m.get('w')!.data.byteLength).toBe(4 << 20);
  });
  it('the CRC-32 of every entry is checked (issue 8, Also)', T, async () => {
    const z = await ckpt(oneTensor({ key: '0', numel: 2, shape: [2], stride: [1] }), { '0': f32bytes([1, 2]) });
    const bad = new Uint8Array(z);
    const at = storedEntry(bad, 'archive/data/0', 8).byteOffset;
    bad[at] ^= 1;
    expect(await caught(readTorchZip(bad))).toMatchInlineSnapshot(`"PickleError bad_zip: entry checksum mismatch (CRC-32): expected 0x2e3fa576, got 0xe295a5e8 → at checkpoint.bin › archive/data/0"`);
    expect(caughtSyncZip(bad)).toMatch(/^PickleError bad_zip: entry checksum mismatch/);
  });
  it('two data.pkl records (same name, or two archives) are refused: no "last one wins" (issue 8, Also)', T, async () => {
    const pkl = stateDict();
    expect(await caught(readTorchZip(rawZip([{ name: 'archive/data.pkl', data: pkl }, { name: 'archive/data.pkl', data: pkl }])))).toMatchInlineSnapshot(`"PickleError bad_zip: malformed zip: expected unique entry names, got two archive/data.pkl (entry archive/data.pkl appears twice) → at checkpoint.bin"`);
    expect(await caught(readTorchZip(rawZip([{ name: 'a/data.pkl', data: pkl }, { name: 'b/data.pkl', data: pkl }])))).toMatchInlineSnapshot(`"PickleError bad_zip: checkpoint has more than one data.pkl: expected one <archive>/data.pkl, got ["a/data.pkl","b/data.pkl"] → at checkpoint.bin"`);
  });
  it('an entry count the central directory cannot hold', T, async () => {
    const z = rawZip([{ name: 'archive/data.pkl', data: stateDict() }]);
    new DataView(z.buffer).setUint16(z.length - 12, 0xfffe, true); // total entries
    expect(await caught(readTorchZip(z))).toMatchInlineSnapshot(`"PickleError bad_zip: malformed zip: expected ≤ 1, got 65534 (entry count larger than the central directory holds) → at checkpoint.bin"`);
  });
});

function caughtSyncZip(b: Uint8Array): string {
  try {
    readTorchZipSync(b);
  } catch (e) {
    if (e instanceof PeftError) return `${e.name} ${e.code}: ${e.message}`;
    throw e;
  }
  return 'no error';
}
