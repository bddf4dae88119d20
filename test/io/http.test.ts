import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { gzipSync } from 'node:zlib';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IoError, PeftError } from '../../src/errors.js';
import { SafetensorsReader } from '../../src/formats/safetensors.js';
import { toFileSet } from '../../src/io/fileset.js';
import { RANGE_PROBE_BYTES, readBody, resolveUrl, urlFileSet } from '../../src/io/http.js';
import { caught } from '../caught.js';

const T = { timeout: 5_000 };
const DIR = join(__dirname, '../fixtures/peft-real/gpt2-tigrinya');
const CONFIG = new Uint8Array(readFileSync(join(DIR, 'adapter_config.json')));
const WEIGHTS = new Uint8Array(readFileSync(join(DIR, 'adapter_model.safetensors')));
const same = (a: Uint8Array | undefined, b: Uint8Array) => expect(a && Buffer.compare(a, b)).toBe(0);


/** What the server saw: one line per request (path and Range), and the body bytes it sent. */
const log: { path: string; range?: string; auth?: string }[] = [];
let sent = 0;
let slowClosed = 0;
let gzipClosed = 0;
let hugeClosed = 0;
let server: Server;
let base: string;

const FILES: Record<string, Uint8Array> = { 'adapter_config.json': CONFIG, 'adapter_model.safetensors': WEIGHTS, 'empty.bin': new Uint8Array(0) };

function serveFile(req: IncomingMessage, res: ServerResponse, body: Uint8Array, ranges: boolean): void {
  const m = ranges && /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
  if (m) {
    const start = Number(m[1]);
    const end = Math.min(m[2] ? Number(m[2]) + 1 : body.length, body.length);
    if (start >= body.length) {
      res.writeHead(416, { 'Content-Range': `bytes */${body.length}` }).end();
      return;
    }
    res.writeHead(206, { 'Content-Range': `bytes ${start}-${end - 1}/${body.length}`, 'Content-Length': end - start, 'Accept-Ranges': 'bytes' });
    sent += end - start;
    res.end(body.subarray(start, end));
    return;
  }
  res.writeHead(200, { 'Content-Length': body.length });
  sent += body.length;
  // Several writes, so the client sees several chunks (progress).
  for (let at = 0; at < body.length; at += 256 * 1024) res.write(body.subarray(at, at + 256 * 1024));
  res.end();
}

beforeAll(async () => {
  server = createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    log.push({ path: url.pathname, range: req.headers.range, auth: req.headers.authorization });
    const [, kind, file] = /^\/([^/]+)\/(.*)$/.exec(url.pathname) ?? [];
    if (kind === 'ranged' || kind === 'plain') {
      const body = FILES[decodeURIComponent(file ?? '')];
      if (!body) return void res.writeHead(404).end('not found');
      return serveFile(req, res, body, kind === 'ranged');
    }
    if (kind === 'status') return void res.writeHead(Number(file)).end('status');
    if (kind === 'truncated') {
      // Promise 1000 bytes, send 100, then drop the connection.
      res.writeHead(200, { 'Content-Length': 1000 });
      res.write(new Uint8Array(100));
      setTimeout(() => res.destroy(), 20);
      return;
    }
    if (kind === 'slow') {
      res.writeHead(200, { 'Content-Length': 1_000_000 });
      const timer = setInterval(() => res.write(new Uint8Array(10)), 50);
      res.on('close', () => {
        clearInterval(timer);
        slowClosed++;
      });
      return;
    }
    if (kind === 'gzip') {
      // A gzip body that inflates far beyond what it weighs on the wire (issue 8 #7, scaled down).
      const big = new Uint8Array(20 << 20).fill(0x20);
      const z = gzipSync(big);
      const headers: Record<string, string | number> = { 'Content-Encoding': 'gzip' };
      if (file !== 'chunked.json') headers['Content-Length'] = z.length;
      res.writeHead(200, headers);
      res.on('close', () => gzipClosed++);
      return void res.end(z);
    }
    if (kind === 'huge') {
      res.writeHead(200, { 'Content-Length': 2 ** 40 });
      res.on('close', () => hugeClosed++);
      return void res.write(new Uint8Array(16));
    }
    if (kind === 'auth') {
      if (req.headers.authorization !== 'Bearer t0ken') return void res.writeHead(401).end();
      return serveFile(req, res, CONFIG, false);
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe('URL FileSet against a real node:http server', () => {
  it('resolves files relative to the URL as a directory', () => {
    expect(resolveUrl('http://h/a/b', 'c.json').href).toBe('http://h/a/b/c.json');
    expect(resolveUrl('http://h/a/b/', 'sub/c d.json').href).toBe('http://h/a/b/sub/c%20d.json');
  });
  it('200: readAll streams the body with increasing progress and the total', T, async () => {
    const fs = await toFileSet(`${base}/plain`); // no trailing slash
    const seen: { loaded: number; total?: number }[] = [];
    same(await fs.readAll('adapter_model.safetensors', { onProgress: (p) => seen.push(p) }), WEIGHTS);
    expect(seen.length).toBeGreaterThan(1);
    for (let i = 1; i < seen.length; i++) expect(seen[i]!.loaded).toBeGreaterThan(seen[i - 1]!.loaded);
    expect(seen.every((p) => p.total === WEIGHTS.length)).toBe(true);
    expect(seen.at(-1)!.loaded).toBe(WEIGHTS.length);
  });
  it('404 → undefined (open and readAll), so callers can try another name', T, async () => {
    const fs = await toFileSet(new URL(`${base}/ranged/`));
    expect(await fs.open('adapter_model.bin')).toBeUndefined();
    expect(await fs.readAll('adapter_model.bin')).toBeUndefined();
  });
  it('500 → IoError http_error', T, async () => {
    const fs = urlFileSet(`${base}/status`);
    expect((await caught(fs.readAll('500'))).replace(base, 'BASE')).toMatchInlineSnapshot(`"IoError http_error: HTTP request failed: expected 200, got 500 → at BASE/status/500"`);
    expect((await caught(fs.open('500'))).replace(base, 'BASE')).toMatchInlineSnapshot(`"IoError http_error: HTTP request failed: expected 200 or 206, got 500 → at BASE/status/500"`);
  });
  it('a body shorter than Content-Length → IoError truncated', T, async () => {
    const fs = urlFileSet(`${base}/truncated`);
    const e = await fs.readAll('x').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(IoError);
    expect(e).toMatchObject({ code: 'truncated', expected: 1000, got: 100 });
  });
  it('abort during a slow body → IoError aborted, and the connection is dropped', T, async () => {
    // The body would take 5000 s to arrive: only the abort can end this read (no wall-clock bound needed).
    const fs = urlFileSet(`${base}/slow`);
    const ac = new AbortController();
    const closed = slowClosed;
    const p = fs.readAll('x', { signal: ac.signal, onProgress: () => ac.abort(new Error('user cancelled')) });
    const e = await p.catch((x: unknown) => x);
    expect(e).toBeInstanceOf(IoError);
    expect((e as IoError).code).toBe('aborted');
    await expect.poll(() => slowClosed).toBeGreaterThan(closed); // the server saw the client go
    // Abort before the response arrives, and an already-aborted signal.
    const ac2 = new AbortController();
    setTimeout(() => ac2.abort(), 10);
    expect((await caught(urlFileSet(`${base}/slow`).open('y', { signal: ac2.signal }))).replace(base, 'BASE')).toMatchInlineSnapshot(`"IoError aborted: read was aborted → at BASE/slow/y"`);
    expect(await urlFileSet(`${base}/ranged`).readAll('adapter_config.json', { signal: AbortSignal.abort() }).catch((x: IoError) => x.code)).toBe('aborted');
  });
  it('Range: open() reads the header, then only the tensors asked for', T, async () => {
    const fs = await toFileSet(`${base}/ranged/`);
    log.length = 0;
    sent = 0;
    const src = (await fs.open('adapter_model.safetensors'))!;
    expect(src.size).toBe(WEIGHTS.length);
    const r = await SafetensorsReader.open(src);
    const ref = SafetensorsReader.fromBytes(WEIGHTS);
    expect([...r.tensors.keys()]).toEqual([...ref.tensors.keys()]);
    const last = [...ref.tensors.keys()].at(-1)!;
    same(await r.bytes(last), ref.bytesSync(last));
    // (filtered: an aborted request of an earlier test may reach the server late)
    expect(log.filter((l) => l.path.startsWith('/ranged/')).map((l) => l.range)).toEqual([`bytes=0-${RANGE_PROBE_BYTES - 1}`, expect.stringMatching(/^bytes=\d+-\d+$/)]);
    expect(sent).toBeLessThan(RANGE_PROBE_BYTES + 2 * ref.bytesSync(last).length);
    // Reads at many splits, inside and past the probe, equal the file.
    for (const [s, e] of [[0, 1], [7, 9], [RANGE_PROBE_BYTES - 3, RANGE_PROBE_BYTES + 5], [123_457, 600_001], [WEIGHTS.length - 1, WEIGHTS.length], [0, WEIGHTS.length]] as const) {
      same(await src.read(s, e), WEIGHTS.subarray(s, e));
    }
  });
  it('a server that ignores Range (200 with the whole file) still works', T, async () => {
    const fs = urlFileSet(`${base}/plain`);
    log.length = 0;
    const src = (await fs.open('adapter_model.safetensors'))!;
    const r = await SafetensorsReader.open(src);
    const name = [...r.tensors.keys()][3]!;
    same(await r.bytes(name), SafetensorsReader.fromBytes(WEIGHTS).bytesSync(name));
    expect(log.filter((l) => l.path.startsWith('/plain/')).length).toBe(1); // the full body was kept, no further requests
  });
  it('an empty file (416 to the probe) is an empty source', T, async () => {
    const src = (await urlFileSet(`${base}/ranged`).open('empty.bin'))!;
    expect(src.size).toBe(0);
    expect(await caught(SafetensorsReader.open(src))).toMatch(/^SafetensorsError file_too_short/);
  });
  it('headers are sent; a refused request is http_error', T, async () => {
    same(await urlFileSet(`${base}/auth`, { headers: { Authorization: 'Bearer t0ken' } }).readAll('c.json'), CONFIG);
    expect(await urlFileSet(`${base}/auth`).readAll('c.json').catch((e: IoError) => [e.code, e.got])).toEqual(['http_error', 401]);
  });
  it('a custom fetch is used; a network failure is IoError read_failed', T, async () => {
    let calls = 0;
    const fs = await toFileSet('https://example.invalid/a', {
      fetch: async () => {
        calls++;
        throw new TypeError('fetch failed');
      },
    });
    expect(await caught(fs.readAll('c.json'))).toMatchInlineSnapshot(`"IoError read_failed: request failed (fetch failed) → at https://example.invalid/a/c.json"`);
    expect(calls).toBe(1);
  });
});

describe('readBody: streamed reads equal one-shot reads at every chunk split', () => {
  const data = WEIGHTS.subarray(0, 5000);
  it.each([1, 2, 3, 7, 8, 13, 64, 999, 4096, 5000])('%i-byte chunks', T, async (chunk) => {
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        for (let at = 0; at < data.length; at += chunk) c.enqueue(data.slice(at, at + chunk));
        c.close();
      },
    });
    const seen: number[] = [];
    const got = await readBody(new Response(stream, { headers: { 'Content-Length': String(data.length) } }), 'x', { onProgress: (p) => seen.push(p.loaded) });
    same(got, data);
    expect(seen.length).toBe(Math.ceil(data.length / chunk));
  });
});

describe('HTTP byte caps: counted after content decoding, enforced while streaming (issue 8 #7)', () => {
  it('a gzip body inflating past maxInflateRatio × its wire size → IoError too_large, stream cancelled', T, async () => {
    const fs = await toFileSet(`${base}/gzip`);
    const e = (await fs.readAll('adapter_config.json').catch((x: unknown) => x)) as IoError;
    expect(e).toBeInstanceOf(IoError);
    expect(e.code).toBe('too_large');
    expect(String(e.expected)).toMatch(/\(maxInflateRatio\)$/);
  });
  it('without Content-Length (chunked), the JSON cap stops it: maxJsonBytes', T, async () => {
    const fs = await toFileSet(`${base}/gzip`);
    const e = (await fs.readAll('chunked.json').catch((x: unknown) => x)) as IoError;
    expect(e).toMatchObject({ code: 'too_large', expected: `≤ ${16 * 2 ** 20} bytes (maxJsonBytes)` });
  });
  it('every limit can be raised: the same body passes when the caps allow it', T, async () => {
    const roomy = await toFileSet(`${base}/gzip`, { limits: { maxInflateRatio: 1e6, maxJsonBytes: 2 ** 30 } });
    expect((await roomy.readAll('adapter_config.json'))!.byteLength).toBe(20 << 20);
  });
  it('a Content-Length beyond the budget is refused before reading the body', T, async () => {
    const fs = await toFileSet(`${base}/huge`, { limits: { maxTotalBytes: 1 << 20 } });
    const closed = hugeClosed;
    expect((await caught(fs.readAll('x.bin'))).replace(base, 'BASE')).toMatchInlineSnapshot(`"IoError too_large: read exceeds a load limit: expected ≤ 1048576 bytes (maxTotalBytes), got 1099511627776 → at BASE/huge/x.bin"`);
    await expect.poll(() => hugeClosed).toBeGreaterThan(closed);
  });
  it('one budget for the whole load: reads add up across files and ranges', T, async () => {
    const fs = await toFileSet(`${base}/ranged`, { limits: { maxTotalBytes: CONFIG.length + 100 } });
    same(await fs.readAll('adapter_config.json'), CONFIG);
    expect(fs.budget!.used).toBe(CONFIG.length);
    const src = (await fs.open('adapter_model.safetensors'))!;
    expect(await src.read(0, 8)).toHaveLength(8);
    expect((await caught(src.read(0, 200))).replace(base, 'BASE')).toMatchInlineSnapshot(`"IoError too_large: read exceeds a load limit: expected ≤ 92 bytes (maxTotalBytes), got 1045 (845 bytes already read in this load) → at BASE/ranged/adapter_model.safetensors"`);
  });
  it('SafetensorsReader.open takes the FileSet limits as its defaults', T, async () => {
    const fs = await toFileSet(`${base}/ranged`, { limits: { maxHeaderBytes: 100 } });
    const src = (await fs.open('adapter_model.safetensors'))!;
    expect((await caught(SafetensorsReader.open(src))).replace(base, 'BASE')).toMatch(/header_too_large.*\(maxHeaderBytes\)/);
  });
});
