import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PeftError, SafetensorsError } from '../../src/errors.js';
import { SAFE_DTYPES, SAFE_DTYPE_ORDER, SafetensorsReader, writeSafetensors, type SafeDType } from '../../src/formats/safetensors.js';
import { blobSource, bytesSource, type ByteSource } from '../../src/io/source.js';
import { caughtSync as caught, caught as caughtAsync } from '../caught.js';

/** Per-case timeout: a parser that hangs fails instead of stalling the run. */
const T = { timeout: 5_000 };
const FIXTURES = join(__dirname, '../fixtures');

/** A file from raw parts: `u64 n` · header text (or bytes) · `data` bytes. */
function craft(header: string | Uint8Array | object, data: number | Uint8Array = 0, declared?: number | bigint): Uint8Array {
  const h = header instanceof Uint8Array ? header : new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.byteLength + d.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(declared ?? h.byteLength), true);
  out.set(h, 8);
  out.set(d, 8 + h.byteLength);
  return out;
}

/** The error as one line: class, code, message. */
/** Byte equality without vitest's slow deep diff on large arrays. */
function sameBytes(a: ArrayBufferView, b: ArrayBufferView): void {
  const x = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  const y = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  expect(Buffer.compare(x, y), `${x.length} vs ${y.length} bytes`).toBe(0);
}
const read = (bytes: Uint8Array, opts = {}) => () => SafetensorsReader.fromBytes(bytes, { file: 'x.safetensors', ...opts });
const f32 = (shape: number[], begin: number) => ({ dtype: 'F32', shape, data_offsets: [begin, begin + 4 * shape.reduce((a, b) => a * b, 1)] });

describe('safetensors: every malformed file gets a typed error', () => {
  it('file shorter than 8 bytes', T, () => {
    expect(caught(read(new Uint8Array(5)))).toMatchInlineSnapshot(`"SafetensorsError file_too_short: file too short for a safetensors header: expected ≥ 8 bytes, got 5 → at x.safetensors"`);
  });
  it('header length beyond the file', T, () => {
    expect(caught(read(craft('{}', 0, 1000)))).toMatchInlineSnapshot(`"SafetensorsError header_out_of_range: header length runs past the end of the file: expected ≤ 2, got 1000 → at x.safetensors"`);
  });
  it('header length of 2⁶⁴−1 (no overflow, no allocation)', T, () => {
    expect(caught(read(craft('{}', 0, 2n ** 64n - 1n)))).toMatchInlineSnapshot(`"SafetensorsError header_out_of_range: header length runs past the end of the file: expected ≤ 2, got 18446744073709551615 → at x.safetensors"`);
  });
  it('header over the cap', T, () => {
    expect(caught(read(craft({ a: f32([2], 0) }, 8), { maxHeaderBytes: 16 }))).toMatchInlineSnapshot(`"SafetensorsError header_too_large: header larger than the limit: expected ≤ 16 bytes (maxHeaderBytes), got 54 → at x.safetensors"`);
  });
  it('header not UTF-8', T, () => {
    expect(caught(read(craft(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]))))).toMatchInlineSnapshot(`"SafetensorsError header_not_utf8: header is not valid UTF-8: expected UTF-8 JSON, got 4 bytes → at x.safetensors"`);
  });
  it('header not JSON', T, () => {
    expect(caught(read(craft('{"a":')))).toMatchInlineSnapshot(`"SafetensorsError header_not_json: header is not valid JSON (unexpected end of input at position 5 (in "a")) → at x.safetensors"`);
  });
  it('header not an object', T, () => {
    expect(caught(read(craft('[1,2]')))).toMatchInlineSnapshot(`"SafetensorsError header_not_object: header is not a JSON object: expected object, got array → at x.safetensors"`);
    expect(caught(read(craft('null')))).toMatchInlineSnapshot(`"SafetensorsError header_not_object: header is not a JSON object: expected object, got null → at x.safetensors"`);
  });
  it('duplicate tensor names (JSON.parse would keep the last)', T, () => {
    const e = `{"dtype":"F32","shape":[1],"data_offsets":[0,4]}`;
    expect(caught(read(craft(`{"a":${e}, "b\\u0022": {"x":{"a":1}}, "a" :${e}}`, 4)))).toMatchInlineSnapshot(`"SafetensorsError duplicate_tensor: name appears twice in the header: expected unique names, got a second entry → at x.safetensors › a"`);
  });
  it('too many tensors', T, () => {
    expect(caught(read(craft({ a: f32([1], 0), b: f32([1], 4), c: f32([1], 8) }, 12), { maxTensors: 2 }))).toMatchInlineSnapshot(`"SafetensorsError too_many_tensors: too many tensors in one file: expected ≤ 2 (maxTensors), got 3 → at x.safetensors"`);
  });
  it('entry not an object', T, () => {
    expect(caught(read(craft({ a: 5 })))).toMatchInlineSnapshot(`"SafetensorsError bad_entry: tensor entry is not an object: expected {dtype, shape, data_offsets}, got number → at x.safetensors › a"`);
  });
  it('dtype missing', T, () => {
    expect(caught(read(craft({ a: { shape: [1], data_offsets: [0, 4] } }, 4)))).toMatchInlineSnapshot(`"SafetensorsError bad_dtype: unknown or missing dtype: expected one of BOOL, F4, F6_E2M3, F6_E3M2, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ, I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64, got missing → at x.safetensors › a"`);
  });
  it('dtype unknown', T, () => {
    expect(caught(read(craft({ a: { dtype: 'F17', shape: [1], data_offsets: [0, 4] } }, 4)))).toMatchInlineSnapshot(`"SafetensorsError bad_dtype: unknown or missing dtype: expected one of BOOL, F4, F6_E2M3, F6_E3M2, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ, I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64, got F17 → at x.safetensors › a"`);
  });
  it('F8 dtypes are listed; decoding them is a typed error naming the dtype (issue 12)', T, () => {
    const r = SafetensorsReader.fromBytes(craft({ a: { dtype: 'F8_E4M3FNUZ', shape: [4], data_offsets: [0, 4] } }, new Uint8Array([1, 2, 3, 4])), { file: 'x.safetensors' });
    expect(r.tensors.get('a')).toMatchObject({ dtype: 'F8_E4M3FNUZ', shape: [4] });
    expect([...r.bytesSync('a')]).toEqual([1, 2, 3, 4]);
    expect(caught(() => r.typedSync('a'))).toMatchInlineSnapshot(`"SafetensorsError unsupported_dtype: dtype cannot be decoded: expected one of F64, F32, F16, BF16, I64, U64, I32, U32, I16, U16, I8, U8, BOOL, got F8_E4M3FNUZ (FP8/FP6/FP4 and complex tensors are listed and their bytes readable, but not decoded; save the tensor as F32, F16 or BF16) → at x.safetensors › a"`);
  });
  it('a dtype named like a JS property is an unknown dtype, not a shape error (issue 8)', T, () => {
    expect(caught(read(craft({ a: { dtype: 'toString', shape: [1], data_offsets: [0, 4] } }, 4)))).toMatchInlineSnapshot(`"SafetensorsError bad_dtype: unknown or missing dtype: expected one of BOOL, F4, F6_E2M3, F6_E3M2, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ, I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64, got toString → at x.safetensors › a"`);
  });
  it('a value nested 4,500 deep (shape, data_offsets) is a typed error, not a stack overflow (issue 8)', T, () => {
    const deep = '['.repeat(4500) + ']'.repeat(4500);
    expect(caught(read(craft(`{"a":{"dtype":"F32","shape":${deep},"data_offsets":[0,4]}}`, 4)))).toMatchInlineSnapshot(`"SafetensorsError header_not_json: header is not valid JSON: expected ≤ 127 levels (maxJsonDepth), got deeper (nesting deeper than 127 at position 153 (in "a" › "shape" › "0" › "0" › … 123 more levels)) → at x.safetensors"`);
    // Within the depth cap, the bad value still reaches the message, cut to a few levels.
    expect(caught(read(craft(`{"a":{"dtype":"F32","shape":[1],"data_offsets":${'['.repeat(100)}0${']'.repeat(100)}}}`, 4)))).toMatchInlineSnapshot(`"SafetensorsError bad_offsets: data_offsets must be [begin, end] with 0 ≤ begin ≤ end: expected [begin, end], got [[[[[…]]]]] → at x.safetensors › a"`);
  });
  it('a shape of 2³² × 2³² × 0 elements is refused (issue 8, maxElements)', T, () => {
    expect(caught(read(craft({ a: { dtype: 'F32', shape: [2 ** 32, 2 ** 32, 0], data_offsets: [0, 0] } })))).toMatchInlineSnapshot(`"SafetensorsError bad_shape: shape has too many elements: expected ≤ 32 dims (maxRank), each an integer ≥ 0, ≤ 4294967296 elements (maxElements), got [4294967296,4294967296,0] → at x.safetensors › a"`);
  });
  it('shape missing, negative, fractional, too many dims, dim too large', T, () => {
    expect(caught(read(craft({ a: { dtype: 'F32', data_offsets: [0, 4] } }, 4)))).toMatchInlineSnapshot(`"SafetensorsError bad_shape: shape must be a list of non-negative integers: expected ≤ 32 dims (maxRank), each an integer ≥ 0, ≤ 4294967296 elements (maxElements), got missing → at x.safetensors › a"`);
    expect(caught(read(craft({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4)))).toMatchInlineSnapshot(`"SafetensorsError bad_shape: shape must be a list of non-negative integers: expected ≤ 32 dims (maxRank), each an integer ≥ 0, ≤ 4294967296 elements (maxElements), got [-1] → at x.safetensors › a"`);
    expect(caught(read(craft({ a: { dtype: 'F32', shape: [1.5], data_offsets: [0, 4] } }, 4)))).toMatchInlineSnapshot(`"SafetensorsError bad_shape: shape must be a list of non-negative integers: expected ≤ 32 dims (maxRank), each an integer ≥ 0, ≤ 4294967296 elements (maxElements), got [1.5] → at x.safetensors › a"`);
    expect(caught(read(craft({ a: { dtype: 'F32', shape: new Array(33).fill(1), data_offsets: [0, 4] } }, 4)))).toMatchInlineSnapshot(`"SafetensorsError bad_shape: shape must be a list of non-negative integers: expected ≤ 32 dims (maxRank), each an integer ≥ 0, ≤ 4294967296 elements (maxElements), got [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,… 1 more] → at x.safetensors › a"`);
    expect(caught(read(craft({ a: { dtype: 'F32', shape: [2 ** 33, 0], data_offsets: [0, 0] } })))).toMatchInlineSnapshot(`"SafetensorsError bad_shape: shape has too many elements: expected ≤ 32 dims (maxRank), each an integer ≥ 0, ≤ 4294967296 elements (maxElements), got [8589934592,0] → at x.safetensors › a"`);
    expect(caught(read(craft({ a: { dtype: 'F64', shape: [2 ** 32, 2 ** 32], data_offsets: [0, 0] } })))).toMatchInlineSnapshot(`"SafetensorsError bad_shape: shape has too many elements: expected ≤ 32 dims (maxRank), each an integer ≥ 0, ≤ 4294967296 elements (maxElements), got [4294967296,4294967296] → at x.safetensors › a"`);
  });
  it('data_offsets missing or malformed', T, () => {
    expect(caught(read(craft({ a: { dtype: 'F32', shape: [1] } }, 4)))).toMatchInlineSnapshot(`"SafetensorsError bad_offsets: data_offsets must be [begin, end] with 0 ≤ begin ≤ end: expected [begin, end], got missing → at x.safetensors › a"`);
    expect(caught(read(craft({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, 4)))).toMatchInlineSnapshot(`"SafetensorsError bad_offsets: data_offsets must be [begin, end] with 0 ≤ begin ≤ end: expected [begin, end], got [4,0] → at x.safetensors › a"`);
    expect(caught(read(craft({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4, 8] } }, 4)))).toMatchInlineSnapshot(`"SafetensorsError bad_offsets: data_offsets must be [begin, end] with 0 ≤ begin ≤ end: expected [begin, end], got [0,4,8] → at x.safetensors › a"`);
    expect(caught(read(craft({ a: { dtype: 'F32', shape: [1], data_offsets: ['0', 4] } }, 4)))).toMatchInlineSnapshot(`"SafetensorsError bad_offsets: data_offsets must be [begin, end] with 0 ≤ begin ≤ end: expected [begin, end], got ["0",4] → at x.safetensors › a"`);
  });
  it('shape × dtype size ≠ byte range', T, () => {
    expect(caught(read(craft({ a: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 20] } }, 20)))).toMatchInlineSnapshot(`"SafetensorsError size_mismatch: byte range does not match shape × dtype size: expected 24, got 20 ([2,3] F32 at [0, 20)) → at x.safetensors › a"`);
  });
  it('offsets beyond the data section', T, () => {
    expect(caught(read(craft({ a: f32([4], 0) }, 8)))).toMatchInlineSnapshot(`"SafetensorsError offsets_out_of_range: tensor data runs past the end of the file: expected end ≤ 8, got 16 → at x.safetensors › a"`);
  });
  it('overlapping tensors', T, () => {
    expect(caught(read(craft({ a: f32([2], 0), b: f32([2], 4) }, 12)))).toMatchInlineSnapshot(`"SafetensorsError offsets_overlap: tensor data overlaps the previous tensor: expected begin ≥ 8 (end of a), got 4 → at x.safetensors › b"`);
  });
  it('hole before the first tensor, between tensors, after the last', T, () => {
    expect(caught(read(craft({ a: f32([1], 4) }, 8)))).toMatchInlineSnapshot(`"SafetensorsError offsets_hole: unused bytes before tensor: expected begin = 0, got 4 → at x.safetensors › a"`);
    expect(caught(read(craft({ a: f32([1], 0), b: f32([1], 8) }, 12)))).toMatchInlineSnapshot(`"SafetensorsError offsets_hole: unused bytes before tensor: expected begin = 4, got 8 → at x.safetensors › b"`);
    expect(caught(read(craft({ a: f32([1], 0) }, 12)))).toMatchInlineSnapshot(`"SafetensorsError offsets_hole: unused bytes after the last tensor: expected data section of 4 bytes, got 12 → at x.safetensors"`);
  });
  it('__metadata__ not string → string', T, () => {
    expect(caught(read(craft({ __metadata__: { format: 1 } })))).toMatchInlineSnapshot(`"SafetensorsError bad_metadata: __metadata__ values must be strings: expected string, got number → at x.safetensors › __metadata__.format"`);
    expect(caught(read(craft({ __metadata__: ['pt'] })))).toMatchInlineSnapshot(`"SafetensorsError bad_metadata: __metadata__ must be an object of strings: expected object, got array → at x.safetensors › __metadata__"`);
  });
  it('unknown tensor name', T, () => {
    const r = SafetensorsReader.fromBytes(craft({ a: f32([1], 0) }, 4), { file: 'x.safetensors' });
    expect(caught(() => r.bytesSync('nope'))).toMatchInlineSnapshot(`"SafetensorsError tensor_not_found: no such tensor: expected one of 1 tensors, got nope → at x.safetensors › nope"`);
  });
  it('collects every entry issue; the error carries them all', T, () => {
    let e: SafetensorsError | undefined;
    try {
      SafetensorsReader.fromBytes(craft({ a: 1, b: { dtype: 'X' }, c: { dtype: 'F32', shape: [1], data_offsets: [0, 8] } }, 8), { file: 'x.safetensors' });
    } catch (x) {
      e = x as SafetensorsError;
    }
    expect(e).toBeInstanceOf(SafetensorsError);
    expect(e!.code).toBe('bad_entry');
    expect(e!.issues.map((i) => i.code)).toEqual(['bad_entry', 'bad_dtype', 'size_mismatch']);
    expect(e!.message).toMatchInlineSnapshot(`"tensor entry is not an object: expected {dtype, shape, data_offsets}, got number (+2 more issues in .issues) → at x.safetensors › a"`);
    expect(e!.issues[2]).toMatchObject({ tensor: 'c', expected: 4, got: 8, file: 'x.safetensors' });
  });
  it('errors carry file, tensor, expected and got as data', T, () => {
    try {
      SafetensorsReader.fromBytes(craft({ a: f32([2], 0), b: f32([2], 4) }, 12), { file: 'x.safetensors' });
    } catch (e) {
      expect(e).toMatchObject({ code: 'offsets_overlap', file: 'x.safetensors', tensor: 'b', got: 4 });
    }
  });
  it('lazy open() reports the same errors as fromBytes()', T, async () => {
    const cases = [new Uint8Array(3), craft('{}', 0, 1000), craft('[1]'), craft({ a: f32([1], 0), b: f32([1], 8) }, 12)];
    for (const c of cases) {
      expect(await caughtAsync(SafetensorsReader.open(bytesSource(c, 'x.safetensors')))).toBe(caught(read(c)));
    }
  });
  it('survives random corruption of real files without crashing', T, () => {
    const good = readFileSync(join(FIXTURES, 'golden/basic/base.safetensors'));
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    for (let k = 0; k < 300; k++) {
      const b = new Uint8Array(good);
      const n = 1 + Math.floor(rnd() * 4);
      for (let j = 0; j < n; j++) b[Math.floor(rnd() * Math.min(b.length, 600))] = Math.floor(rnd() * 256);
      try {
        SafetensorsReader.fromBytes(k % 3 ? b : b.subarray(0, Math.floor(rnd() * b.length)));
      } catch (e) {
        expect(e).toBeInstanceOf(SafetensorsError);
      }
    }
  });
});

/** Deterministic bytes for a dtype: values that survive a round trip exactly (BOOL as 0/1). */
function sample(dtype: SafeDType, n: number): ArrayBufferView {
  const { bytes, array } = SAFE_DTYPES[dtype];
  const out = new Uint8Array(n * bytes);
  for (let i = 0; i < out.length; i++) out[i] = dtype === 'BOOL' ? i % 3 === 0 ? 1 : 0 : (i * 37 + 11) & 0xff;
  if (dtype === 'F32') return Float32Array.from({ length: n }, (_, i) => i / 7 - 1);
  if (dtype === 'F64') return Float64Array.from({ length: n }, (_, i) => Math.PI * i);
  return new (array as unknown as new (b: ArrayBuffer) => ArrayBufferView)(out.buffer);
}

describe('safetensors: writer → reader round trip', () => {
  // The dtypes a typed array can hold; the others (F4/F6/F8, C64) are covered byte for byte by safetensors-reference.test.ts.
  const dtypes = SAFE_DTYPE_ORDER.filter((d) => SAFE_DTYPES[d].array);
  const tensors = Object.fromEntries(
    dtypes.flatMap((d) => [
      [`${d.toLowerCase()}.w`, { dtype: d, shape: [3, 5], data: sample(d, 15) }],
      [`${d.toLowerCase()}.scalar`, { dtype: d, shape: [], data: sample(d, 1) }],
      [`${d.toLowerCase()}.empty`, { dtype: d, shape: [0, 4], data: sample(d, 0) }],
    ]),
  );
  const file = writeSafetensors(tensors, { format: 'pt', note: 'ünïcode ✓' });

  it('header is padded with spaces to a multiple of 8; offsets contiguous, sorted by alignment then name', T, () => {
    const n = Number(new DataView(file.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const text = new TextDecoder().decode(file.subarray(8, 8 + n));
    expect(text).toMatch(/^\{.*\} *$/);
    const r = SafetensorsReader.fromBytes(file);
    expect(r.dataOffset).toBe(8 + n);
    const order = [...r.tensors.values()].filter((t) => t.end > t.begin).map((t) => SAFE_DTYPES[t.dtype].bytes);
    expect(order).toEqual([...order].sort((a, b) => b - a));
    for (const t of r.tensors.values()) expect((r.dataOffset + t.begin) % SAFE_DTYPES[t.dtype].bytes).toBe(0);
  });

  it.each(dtypes)('%s: bytes, typed views and metadata survive', T, (d) => {
    const r = SafetensorsReader.fromBytes(file);
    expect(r.metadata).toEqual({ format: 'pt', note: 'ünïcode ✓' });
    for (const suffix of ['w', 'scalar', 'empty']) {
      const name = `${d.toLowerCase()}.${suffix}`;
      const info = r.tensors.get(name)!;
      expect(info.dtype).toBe(d);
      expect(info.shape).toEqual(tensors[name]!.shape);
      const src = tensors[name]!.data;
      expect(r.bytesSync(name)).toEqual(new Uint8Array(src.buffer, src.byteOffset, src.byteLength));
      const typed = r.typedSync(name);
      expect(typed).toBeInstanceOf(SAFE_DTYPES[d].array);
      expect(typed).toEqual(src);
      expect(typed.buffer).toBe(file.buffer); // aligned: zero-copy
    }
  });

  it('unaligned bytes give an aligned copy with the same values', T, async () => {
    const shifted = new Uint8Array(file.length + 1);
    shifted.set(file, 1);
    const r = SafetensorsReader.fromBytes(shifted.subarray(1));
    const t = (await r.typed('f64.w')) as Float64Array;
    expect(t.buffer).not.toBe(shifted.buffer);
    expect(t).toEqual(tensors['f64.w']!.data);
    expect(r.bytesSync('u8.w').buffer).toBe(shifted.buffer);
  });

  it('open() on a ByteSource reads the header, then only the tensors asked for', T, async () => {
    const reads: [number, number][] = [];
    const base = bytesSource(file, 'rt.safetensors');
    const src: ByteSource = { name: base.name, size: base.size, read: (s, e, sig) => (reads.push([s, e]), base.read(s, e, sig)) };
    const r = await SafetensorsReader.open(src);
    expect(reads.length).toBe(2);
    expect(await r.bytes('i16.w')).toEqual(SafetensorsReader.fromBytes(file).bytesSync('i16.w'));
    expect(reads.length).toBe(3);
    const t = r.tensors.get('i16.w')!;
    expect(reads[2]).toEqual([r.dataOffset + t.begin, r.dataOffset + t.end]);
    expect(caught(() => r.bytesSync('i16.w'))).toMatchInlineSnapshot(`"IoError unsupported_source: bytesSync needs a reader made by fromBytes: expected SafetensorsReader.fromBytes, got SafetensorsReader.open → at rt.safetensors › i16.w"`);
  });

  it('the writer refuses bad input with typed errors', T, () => {
    expect(caught(() => writeSafetensors({ a: { dtype: 'F32', shape: [3], data: new Float32Array(2) } }))).toMatchInlineSnapshot(`"SafetensorsError size_mismatch: data size does not match shape × dtype size: expected 12, got 8 → at (writer) › a"`);
    expect(caught(() => writeSafetensors({ a: { dtype: 'F8' as SafeDType, shape: [1], data: new Uint8Array(1) } }))).toMatchInlineSnapshot(`"SafetensorsError bad_dtype: unknown dtype: expected one of BOOL, F4, F6_E2M3, F6_E3M2, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ, I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64, got F8 → at (writer) › a"`);
    expect(caught(() => writeSafetensors({ __metadata__: { dtype: 'U8', shape: [1], data: new Uint8Array(1) } }))).toMatchInlineSnapshot(`"SafetensorsError bad_entry: reserved tensor name: expected any name but __metadata__, got __metadata__ → at (writer) › __metadata__"`);
  });

  const python = (() => {
    try {
      execFileSync('python3', ['-c', 'import json, struct'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();
  it.skipIf(!python)('python3 (struct + json) reads the layout the way safetensors does', T, () => {
    const dir = mkdtempSync(join(tmpdir(), 'peftjs-st-'));
    writeFileSync(join(dir, 'f.safetensors'), file);
    const script = `
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n, = struct.unpack('<Q', b[:8])
assert n % 8 == 0
h = json.loads(b[8:8+n])
meta = h.pop('__metadata__')
ends = sorted(v['data_offsets'] for v in h.values())
pos = 0
for s, e in ends:
    assert s == pos, (s, pos)
    pos = e
assert 8 + n + pos == len(b)
vals = struct.unpack('<15f', b[8+n+h['f32.w']['data_offsets'][0]:8+n+h['f32.w']['data_offsets'][1]])
print(json.dumps({'meta': meta, 'f32': [round(v, 5) for v in vals[:3]], 'n': len(h)}))
`;
    const out = JSON.parse(execFileSync('python3', ['-c', script, join(dir, 'f.safetensors')], { encoding: 'utf8' }));
    expect(out).toEqual({ meta: { format: 'pt', note: 'ünïcode ✓' }, f32: [-1, -0.85714, -0.71429], n: dtypes.length * 3 });
  });
});

function listSafetensors(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? listSafetensors(p) : f.endsWith('.safetensors') ? [p] : [];
  });
}

describe('safetensors: real fixtures', () => {
  const facts: Record<string, [count: number, first: string, dtype: SafeDType, shape: number[], dataOffset: number]> = {
    'distilbert-imdb': [28, 'base_model.model.classifier.bias', 'F32', [2], 3848],
    'gpt2-tigrinya': [72, 'base_model.model.transformer.h.0.attn.c_attn.lora_A.weight', 'F32', [8, 768], 9072],
    'opt125m-bf16': [48, 'base_model.model.model.decoder.layers.0.self_attn.q_proj.lora_A.weight', 'BF16', [16, 768], 6680],
    'smollm135m-qv': [120, 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', 'F32', [16, 576], 15768],
  };
  it.each(Object.entries(facts))('peft-real/%s header facts', T, async (dir, [count, first, dtype, shape, dataOffset]) => {
    const bytes = new Uint8Array(readFileSync(join(FIXTURES, 'peft-real', dir, 'adapter_model.safetensors')));
    const r = SafetensorsReader.fromBytes(bytes);
    expect(r.tensors.size).toBe(count);
    expect(r.metadata).toEqual({ format: 'pt' });
    expect(r.dataOffset).toBe(dataOffset);
    const [name, info] = [...r.tensors][0]!;
    expect([name, info.dtype, info.shape]).toEqual([first, dtype, shape]);
    // Rewriting gives a file that reads back to the same tensors.
    const again = SafetensorsReader.fromBytes(
      writeSafetensors(Object.fromEntries([...r.tensors.values()].map((t) => [t.name, { dtype: t.dtype, shape: t.shape, data: r.bytesSync(t.name) }])), { ...r.metadata }),
    );
    for (const t of r.tensors.values()) sameBytes(again.bytesSync(t.name), r.bytesSync(t.name));
  });
  it('every golden .safetensors parses and every tensor reads', T, async () => {
    const files = listSafetensors(join(FIXTURES, 'golden'));
    expect(files.length).toBeGreaterThan(30);
    for (const f of files) {
      const r = SafetensorsReader.fromBytes(new Uint8Array(readFileSync(f)), { file: f });
      for (const t of r.tensors.values()) {
        const v = await r.typed(t.name);
        expect(v.length).toBe(t.shape.reduce((a, b) => a * b, 1));
      }
    }
  });
});

describe('safetensors: streamed reads equal one-shot reads at many chunk splits', () => {
  const bytes = new Uint8Array(readFileSync(join(FIXTURES, 'golden/dtype-bf16/base.safetensors')));
  const ref = SafetensorsReader.fromBytes(bytes);
  it.each([1, 2, 3, 7, 8, 13, 64, 1000, 4096, bytes.length])('Blob of %i-byte parts', T, async (chunk) => {
    const parts: Uint8Array[] = [];
    // Varying part sizes around `chunk`, so boundaries fall everywhere relative to tensor edges.
    for (let at = 0, k = 0; at < bytes.length; k++) {
      const n = Math.max(1, chunk + (k % 3) - 1);
      parts.push(bytes.slice(at, at + n));
      at += n;
    }
    const r = await SafetensorsReader.open(blobSource(new Blob(parts as Uint8Array<ArrayBuffer>[]), 'parts'));
    expect([...r.tensors.keys()]).toEqual([...ref.tensors.keys()]);
    for (const name of ref.tensors.keys()) {
      sameBytes(await r.bytes(name), ref.bytesSync(name));
      const t = await r.typed(name);
      expect(t.constructor).toBe(ref.typedSync(name).constructor);
      sameBytes(t, ref.typedSync(name));
    }
  });
});
