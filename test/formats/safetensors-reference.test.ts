import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SafetensorsError } from '../../src/errors.js';
import { SafetensorsReader, writeSafetensors, type SafeDType, type TensorToWrite } from '../../src/formats/safetensors.js';

/**
 * Replays vectors produced by the reference implementation itself: huggingface/safetensors (the Rust crate,
 * through its Python binding), see vectors/gen-safetensors.py. `writer`: the bytes `serialize` wrote
 * (tensor.rs `prepare`: dtype order descending, then name; serde_json header; space padding to 8).
 * `reader`: whether `deserialize` (serde_json + `Metadata::validate`) accepted a header.
 */
interface Vectors {
  generator: string;
  writer: { tensors: Record<string, { dtype: SafeDType; shape: number[]; data: string }>; metadata: Record<string, string> | null; out: string; readable: boolean }[];
  reader: { why: string; header: string; dataLen: number; ok: boolean; error?: string }[];
}
const V = JSON.parse(readFileSync(join(__dirname, 'vectors/safetensors-reference.json'), 'utf8')) as Vectors;
const T = { timeout: 10_000 };
const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

function tensorsOf(c: Vectors['writer'][number]): Record<string, TensorToWrite> {
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, t] of Object.entries(c.tensors)) tensors[name] = { dtype: t.dtype, shape: t.shape, data: new Uint8Array(Buffer.from(t.data, 'hex')) };
  return tensors;
}

function file(header: string, dataLen: number): Uint8Array {
  const h = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + h.byteLength + dataLen);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.byteLength), true);
  out.set(h, 8);
  return out;
}

/**
 * Where peftjs is deliberately stricter than the reference (docs/limits.md lists each): it rejects what a
 * second reader could see differently, and the code it rejects with.
 */
const STRICTER: Record<string, string> = {
  'repeated tensor name': 'duplicate_tensor', // serde keeps one of the two entries: which bytes a name means depends on the reader
  'repeated metadata key': 'bad_metadata', // the same for metadata
  'entry as an array (serde accepts a seq for a struct)': 'bad_entry', // serde's struct-from-sequence leniency; no writer emits it
};

describe(`safetensors writer: byte-identical to the reference (${V.generator})`, () => {
  it(`${V.writer.length} random tensor sets: all dtypes, numeric / Unicode / astral / escaped names, empty and absent metadata`, T, () => {
    let n = 0;
    for (const c of V.writer.filter((w) => w.readable)) {
      expect(hex(writeSafetensors(tensorsOf(c), c.metadata ?? undefined)), JSON.stringify(Object.keys(c.tensors))).toBe(c.out);
      n++;
    }
    expect(n).toBeGreaterThan(110);
  });
  it('no tensors + empty metadata: the reference writes `{},"__metadata__":{}}` (unreadable, to it too); we write valid JSON', T, () => {
    const bad = V.writer.filter((w) => !w.readable);
    expect(bad.length).toBeGreaterThan(0);
    for (const c of bad) {
      expect(c.tensors).toEqual({});
      expect(() => SafetensorsReader.fromBytes(new Uint8Array(Buffer.from(c.out, 'hex')))).toThrow(SafetensorsError); // as the reference reader
      const ours = writeSafetensors({}, {});
      expect(new TextDecoder().decode(ours.subarray(8)).trimEnd()).toBe('{"__metadata__":{}}');
      expect(SafetensorsReader.fromBytes(ours).metadata).toEqual({});
    }
  });
  it('and the reader reads every one of those files back', T, () => {
    for (const c of V.writer.filter((w) => w.readable)) {
      const r = SafetensorsReader.fromBytes(new Uint8Array(Buffer.from(c.out, 'hex')));
      expect([...r.tensors.keys()].sort()).toEqual(Object.keys(c.tensors).sort());
      for (const [name, t] of Object.entries(c.tensors)) expect(hex(r.bytesSync(name))).toBe(t.data);
      expect(r.metadata).toEqual(c.metadata ?? {});
    }
  });
});

describe('safetensors reader: the reference decides what is a valid header', () => {
  it.each(V.reader.map((c) => [c.why, c] as const))('%s', T, (_why, c) => {
    let got: unknown;
    try {
      SafetensorsReader.fromBytes(file(c.header, c.dataLen), { file: 'v.safetensors' });
    } catch (e) {
      got = e;
    }
    const stricter = STRICTER[c.why];
    if (c.ok && !stricter) {
      expect(got, 'reference accepts it').toBeUndefined();
    } else {
      expect(got, c.error ?? `stricter: ${stricter}`).toBeInstanceOf(SafetensorsError);
      if (stricter) expect((got as SafetensorsError).code).toBe(stricter);
    }
  });
  it('covers the rules the issue names', () => {
    const whys = V.reader.map((c) => c.why);
    for (const w of ['shape value 1.0', 'shape value 1e0', 'shape value -0', 'repeated data_offsets in one entry', 'lone high surrogate escape in a name', 'nesting depth 128', 'dtype F8_E4M3FNUZ is parsed', 'dtype C64 is parsed', 'dtype U64 is parsed', 'dtype F4 is parsed']) {
      expect(whys).toContain(w);
    }
  });
});
