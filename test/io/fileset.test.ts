import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { IoError, PeftError } from '../../src/errors.js';
import { SafetensorsReader } from '../../src/formats/safetensors.js';
import { memoryFileSet, toFileSet, type FileSet } from '../../src/io/fileset.js';
import { blobSource, bytesSource } from '../../src/io/source.js';
import { directoryHandleFileSet } from '../../src/io/web.js';
import { caught } from '../caught.js';

const T = { timeout: 5_000 };
const DIR = join(__dirname, '../fixtures/peft-real/opt125m-bf16');
const CONFIG = new Uint8Array(readFileSync(join(DIR, 'adapter_config.json')));
const WEIGHTS = new Uint8Array(readFileSync(join(DIR, 'adapter_model.safetensors')));

const same = (a: Uint8Array | undefined, b: Uint8Array) => expect(a && Buffer.compare(a, b)).toBe(0);

/** Every split point checks `read` across chunk edges against the one-shot bytes. */
async function checkRandomAccess(fs: FileSet): Promise<void> {
  const src = (await fs.open('adapter_model.safetensors'))!;
  expect(src.size).toBe(WEIGHTS.length);
  for (const chunk of [1, 7, 8, 4096, 65_537, WEIGHTS.length]) {
    const step = Math.max(chunk, Math.ceil(WEIGHTS.length / 40)); // ≤ 40 reads per size, wherever they fall
    for (let at = 0; at < WEIGHTS.length; at += step) same(await src.read(at, Math.min(at + chunk, WEIGHTS.length)), WEIGHTS.subarray(at, at + chunk));
  }
  same(await src.read(5, 5), new Uint8Array(0));
  expect(await caught(src.read(0, WEIGHTS.length + 1))).toMatch(/^IoError read_failed: byte range outside the file: expected 0 ≤ start ≤ end ≤ 1186328, got \[0, 1186329\)/);
  const r = await SafetensorsReader.open(src);
  const ref = SafetensorsReader.fromBytes(WEIGHTS);
  for (const name of [...ref.tensors.keys()].slice(0, 5)) same(await r.bytes(name), ref.bytesSync(name));
}

describe('ByteSource', () => {
  it('bytesSource is zero-copy and checks ranges', T, async () => {
    const b = new Uint8Array(16).map((_, i) => i);
    const s = bytesSource(b, 'b');
    expect((await s.read(2, 5)).buffer).toBe(b.buffer);
    expect([...(await s.read(2, 5))]).toEqual([2, 3, 4]);
    expect(bytesSource(b.buffer).size).toBe(16);
    expect(await caught(s.read(5, 2))).toMatchInlineSnapshot(`"IoError read_failed: byte range outside the file: expected 0 ≤ start ≤ end ≤ 16, got [5, 2) → at b"`);
    const ac = new AbortController();
    ac.abort();
    expect(await caught(s.read(0, 1, ac.signal))).toMatchInlineSnapshot(`"IoError aborted: read was aborted → at b"`);
  });
  it('blobSource reads slices of a Blob or File', T, async () => {
    const s = blobSource(new File([WEIGHTS as Uint8Array<ArrayBuffer>], 'w.safetensors'));
    expect(s.name).toBe('w.safetensors');
    same(await s.read(100, 200), WEIGHTS.subarray(100, 200));
  });
});

describe('FileSet: local directory (node:fs/promises)', () => {
  it('open/readAll; missing files and directories are undefined', T, async () => {
    const fs = await toFileSet(DIR);
    expect(fs.name).toBe(DIR);
    same(await fs.readAll('adapter_config.json'), CONFIG);
    expect(await fs.open('nope.bin')).toBeUndefined();
    expect(await fs.readAll('nope.bin')).toBeUndefined();
    expect(await (await toFileSet(join(DIR, '..'))).open('opt125m-bf16')).toBeUndefined();
    const progress: unknown[] = [];
    await fs.readAll('adapter_config.json', { onProgress: (p) => progress.push(p) });
    expect(progress).toEqual([{ loaded: CONFIG.length, total: CONFIG.length }]);
  });
  it('random access at many splits equals the whole file', T, async () => {
    await checkRandomAccess(await toFileSet(DIR));
  });
  it('file:// URLs, as string or URL', T, async () => {
    same(await (await toFileSet(pathToFileURL(DIR).href)).readAll('adapter_config.json'), CONFIG);
    same(await (await toFileSet(pathToFileURL(DIR))).readAll('adapter_config.json'), CONFIG);
  });
  it('an aborted signal stops reads', T, async () => {
    const ac = new AbortController();
    ac.abort();
    const fs = await toFileSet(DIR);
    expect(await caught(fs.readAll('adapter_config.json', { signal: ac.signal }))).toMatch(/^IoError aborted: read was aborted → at /);
  });
});

describe('FileSet: in memory', () => {
  it('Record and Map of Uint8Array, ArrayBuffer, Blob, File and Response', T, async () => {
    const files = {
      'a.bin': CONFIG,
      'b.bin': CONFIG.slice().buffer,
      'c.bin': new Blob([CONFIG as Uint8Array<ArrayBuffer>]),
      'd.bin': new File([CONFIG as Uint8Array<ArrayBuffer>], 'd.bin'),
      'e.bin': new Response(CONFIG as Uint8Array<ArrayBuffer>),
      'missing.bin': new Response('no', { status: 404 }),
      'broken.bin': new Response('no', { status: 500 }),
    };
    for (const fs of [await toFileSet(files), await toFileSet(new Map(Object.entries({ ...files, 'e.bin': new Response(CONFIG as Uint8Array<ArrayBuffer>) })))]) {
      for (const f of ['a.bin', 'b.bin', 'c.bin', 'd.bin', 'e.bin']) {
        same(await fs.readAll(f), CONFIG);
        same(await (await fs.open(f))!.read(0, CONFIG.length), CONFIG);
      }
      expect(await fs.open('x')).toBeUndefined();
      expect(await fs.readAll('missing.bin')).toBeUndefined();
      expect(await caught(fs.readAll('broken.bin'))).toMatchInlineSnapshot(`"IoError http_error: HTTP response is not OK: expected 200, got 500 → at broken.bin"`);
    }
  });
  it('a Response body is read once and shared', T, async () => {
    const fs = memoryFileSet({ 'adapter_model.safetensors': new Response(WEIGHTS as Uint8Array<ArrayBuffer>) });
    await checkRandomAccess(fs);
    same(await fs.readAll('adapter_model.safetensors'), WEIGHTS);
  });
  it('unsupported values and sources are typed errors', T, async () => {
    expect(await caught((await toFileSet({ 'x.bin': 'text' as unknown as Uint8Array })).readAll('x.bin'))).toMatchInlineSnapshot(`"IoError unsupported_source: unsupported in-memory file: expected Uint8Array, ArrayBuffer, Blob, File or Response, got string → at x.bin"`);
    expect(await caught(toFileSet(42 as unknown as string))).toMatchInlineSnapshot(`"IoError unsupported_source: cannot read an adapter from this value: expected URL, path, FileSet, Record/Map of files or FileSystemDirectoryHandle, got number"`);
    expect(await caught(toFileSet(new URL('ftp://example.com/x')))).toMatchInlineSnapshot(`"IoError unsupported_source: unsupported URL scheme: expected http:, https: or file:, got ftp:"`);
  });
  it('a FileSet is read through, under the load limits; a limited FileSet passes through', T, async () => {
    const fs = memoryFileSet({ 'a.bin': new Uint8Array([1, 2, 3]) });
    const limited = await toFileSet(fs);
    expect(await limited.readAll('a.bin')).toEqual(new Uint8Array([1, 2, 3]));
    expect(limited.budget?.used).toBe(3);
    expect(await toFileSet(limited)).toBe(limited);
  });
});

/** The one acceptable fake: Node has no FileSystemDirectoryHandle. Same surface as the browser's. */
function fakeDirectory(name: string, entries: Record<string, Uint8Array | Record<string, Uint8Array>>): FileSystemDirectoryHandle {
  const notFound = () => Object.assign(new Error(`A requested file or directory could not be found`), { name: 'NotFoundError' });
  return {
    kind: 'directory',
    name,
    async getFileHandle(n: string) {
      const v = entries[n];
      if (!(v instanceof Uint8Array)) throw v ? Object.assign(new Error('not a file'), { name: 'TypeMismatchError' }) : notFound();
      return { kind: 'file', name: n, getFile: async () => new File([v as Uint8Array<ArrayBuffer>], n) };
    },
    async getDirectoryHandle(n: string) {
      const v = entries[n];
      if (!v || v instanceof Uint8Array) throw notFound();
      return fakeDirectory(n, v);
    },
  } as unknown as FileSystemDirectoryHandle;
}

describe('FileSet: FileSystemDirectoryHandle', () => {
  const dir = fakeDirectory('adapter', { 'adapter_config.json': CONFIG, 'adapter_model.safetensors': WEIGHTS, sub: { 'x.json': CONFIG } });
  it('getFileHandle → getFile → Blob; NotFoundError → undefined', T, async () => {
    const fs = await toFileSet(dir);
    expect(fs.name).toBe('adapter');
    same(await fs.readAll('adapter_config.json'), CONFIG);
    same(await fs.readAll('sub/x.json'), CONFIG);
    expect(await fs.open('missing.json')).toBeUndefined();
    expect(await fs.open('sub')).toBeUndefined();
    expect(await fs.open('nosub/x.json')).toBeUndefined();
    await checkRandomAccess(fs);
  });
  it('other failures are IoError read_failed', T, async () => {
    const broken = { kind: 'directory' as const, name: 'd', getFileHandle: async () => Promise.reject(Object.assign(new Error('denied'), { name: 'NotAllowedError' })) };
    expect(await caught(directoryHandleFileSet(broken).readAll('a.json'))).toMatchInlineSnapshot(`"IoError read_failed: could not open the file (denied) → at d/a.json"`);
    expect(await caught(directoryHandleFileSet(broken).readAll('a.json'))).toMatch(IoError.name);
  });
});
