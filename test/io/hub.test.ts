// The Hub source against a local mock of the Hub on 127.0.0.1: `/owner/repo/resolve/<revision>/<file>` with
// ETag / If-None-Match (304) and Range, as huggingface.co answers. The adapter is the golden `basic` case,
// whose expected outputs were computed in float64 from PEFT's formula (test/fixtures/golden).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { JsBackend } from '../../src/backends/js.js';
import { IoError } from '../../src/errors.js';
import { toFileSet } from '../../src/io/fileset.js';
import { hubBaseUrl, hubFileSet, parseHubRepo, type HubCache } from '../../src/io/hub.js';
import { nodeDirCache } from '../../src/io/hub-cache-node.js';
import { LoRAContainer } from '../../src/adapter/container.js';
import { LoRALinear } from '../../src/lora/lora-linear.js';
import { modelFromWeights } from '../../src/nn/model-from-weights.js';
import { expectClose, GOLDEN, readSafetensors } from '../lora/helpers.js';

const ADAPTER = join(GOLDEN, 'basic/adapter');
/** The error `fn` throws (the test fails if it returns). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}
const files = (): Record<string, Uint8Array> => ({
  'adapter_config.json': readFileSync(join(ADAPTER, 'adapter_config.json')),
  'adapter_model.safetensors': readFileSync(join(ADAPTER, 'adapter_model.safetensors')),
});
/** The repository the mock serves, per revision; `etag` changes when a test rewrites a file. */
const repo: Record<string, { files: Record<string, Uint8Array>; etag: string }> = {};
const log: { path: string; status: number; auth?: string; range?: string; bytes: number }[] = [];
let server: Server;
let endpoint: string;

beforeAll(async () => {
  repo.main = { files: files(), etag: '"v1"' };
  repo['refs/pr/1'] = { files: files(), etag: '"pr1"' };
  repo['0123456789abcdef0123456789abcdef01234567'] = { files: files(), etag: '"c1"' };
  server = createServer((req, res) => {
    const send = (status: number, headers: Record<string, string | number> = {}, body?: Uint8Array) => {
      log.push({ path: decodeURIComponent(req.url!), status, auth: req.headers.authorization, range: req.headers.range, bytes: body?.byteLength ?? 0 });
      res.writeHead(status, headers).end(body);
    };
    // Like the Hub: one path segment for the revision (refs%2Fpr%2F1), files below it.
    const m = /^\/acme\/tiny-lora\/resolve\/([^/]+)\/(.+)$/.exec(req.url!);
    const rev = m && repo[decodeURIComponent(m[1]!)];
    const body = rev?.files[decodeURIComponent(m![2]!)];
    if (!rev || !body) return send(404, {}, new TextEncoder().encode('Entry not found'));
    const etag = `${rev.etag.slice(0, -1)}-${body.byteLength}"`;
    if (req.headers['if-none-match'] === etag) return send(304, { etag });
    const r = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (r) {
      const start = Number(r[1]);
      const end = Math.min(Number(r[2]) + 1, body.byteLength);
      return send(206, { 'content-range': `bytes ${start}-${end - 1}/${body.byteLength}`, 'content-length': end - start, etag }, body.subarray(start, end));
    }
    send(200, { 'content-length': body.byteLength, etag }, body);
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((ok) => server.close(() => ok())));

/** Loads the adapter, applies it to the golden base model and checks every module's y_on (float64 reference). */
async function loadAndCheck(source: Parameters<typeof LoRAContainer.fromPEFT>[0]): Promise<void> {
  const backend = new JsBackend();
  const model = modelFromWeights(readSafetensors(join(GOLDEN, 'basic/base.safetensors')), { backend });
  const io = readSafetensors(join(GOLDEN, 'basic/io.safetensors'));
  const container = await LoRAContainer.fromPEFT(source);
  const applied = container.apply(model);
  expect(applied.map((a) => a.path).sort()).toEqual([
    'model.layers.0.self_attn.q_proj',
    'model.layers.0.self_attn.v_proj',
    'model.layers.1.self_attn.q_proj',
    'model.layers.1.self_attn.v_proj',
  ]);
  for (const { path } of applied) {
    const want = io.get(`${path}.y_on`)!;
    expectClose(model.get(path, LoRALinear)!.forward(io.get(`${path}.x`)!).toCpu().data, want.data as Float64Array, want.shape, 1e-4, path);
  }
}

describe('repository ids and URLs', () => {
  test('owner/repo[@revision] → <endpoint>/owner/repo/resolve/<revision>/', () => {
    expect(parseHubRepo('acme/tiny-lora')).toEqual({ owner: 'acme', name: 'tiny-lora', revision: 'main' });
    expect(parseHubRepo('acme/tiny-lora@v1.0')).toEqual({ owner: 'acme', name: 'tiny-lora', revision: 'v1.0' });
    expect(parseHubRepo('gpt2')).toEqual({ name: 'gpt2', revision: 'main' });
    expect(hubBaseUrl('acme/tiny-lora')).toBe('https://huggingface.co/acme/tiny-lora/resolve/main/');
    expect(hubBaseUrl('acme/tiny-lora@refs/pr/1', { endpoint: 'http://mirror.local/hf/' })).toBe('http://mirror.local/hf/acme/tiny-lora/resolve/refs%2Fpr%2F1/');
    expect(hubBaseUrl('acme/x', { subfolder: 'adapters/v2/' })).toBe('https://huggingface.co/acme/x/resolve/main/adapters/v2/');
  });

  test.each(['', 'a/b/c', '../etc', 'acme/..', 'acme/re po', 'acme/repo@', 'acme/repo@../../x', '-x/y'])('bad id %j → IoError unsupported_source', (id) => {
    const e = thrown(() => parseHubRepo(id));
    expect(e).toBeInstanceOf(IoError);
    expect(e).toMatchObject({ code: 'unsupported_source', got: id });
  });

  test('a subfolder may not climb out of the repository', () => {
    expect(thrown(() => hubBaseUrl('acme/x', { subfolder: 'a/../../b' }))).toMatchObject({ code: 'unsupported_source' });
  });
});

describe('loading from the mock Hub', () => {
  test('hubFileSet(owner/repo) → fromPEFT → apply → forward matches the float64 y_on; the token is sent', async () => {
    log.length = 0;
    await loadAndCheck(hubFileSet('acme/tiny-lora', { endpoint, token: 'hf_secret' }));
    expect(log.length).toBeGreaterThan(0);
    expect(log.every((l) => l.path.startsWith('/acme/tiny-lora/resolve/main/') && l.auth === 'Bearer hf_secret')).toBe(true);
  });

  test("the string 'hf://owner/repo@revision' works wherever a source is taken (revision with '/' as one segment)", async () => {
    log.length = 0;
    const fs = await toFileSet('hf://acme/tiny-lora@refs/pr/1', { fetch: (u, i) => fetch(String(u).replace('https://huggingface.co', endpoint), i) });
    await loadAndCheck(fs);
    expect(log.some((l) => l.path === '/acme/tiny-lora/resolve/refs/pr/1/adapter_model.safetensors')).toBe(true);
  });

  test('a missing repository or revision: the loader says which file it could not find', async () => {
    const e = await LoRAContainer.fromPEFT(hubFileSet('acme/tiny-lora@nope', { endpoint })).catch((x: unknown) => x);
    expect(e).toMatchObject({ name: 'ConfigError', code: 'config_missing' });
  });
});

describe('opt-in cache (a directory in Node)', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'peftjs-hub-cache-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('first load downloads; the next revalidates by ETag (304, no body); a changed file is downloaded again', async () => {
    const opts = { endpoint, cache: dir };
    log.length = 0;
    await loadAndCheck(hubFileSet('acme/tiny-lora', opts));
    const first = log.splice(0);
    expect(first.filter((l) => l.status === 200).map((l) => l.path.split('/').pop()).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    expect(first.every((l) => l.range === undefined)).toBe(true); // whole files, to keep
    expect(readdirSync(dir).filter((f) => f.endsWith('.bin'))).toHaveLength(2);

    await loadAndCheck(hubFileSet('acme/tiny-lora', opts));
    const second = log.splice(0);
    expect(second.length).toBeGreaterThan(0);
    expect(second.every((l) => l.status === 304 && l.bytes === 0)).toBe(true);

    // A new commit on main: new ETags, new bytes (the same adapter, rewritten) → 200 and the cache is refreshed.
    repo.main!.etag = '"v2"';
    await loadAndCheck(hubFileSet('acme/tiny-lora', opts));
    const third = log.splice(0);
    expect(third.filter((l) => l.status === 200)).toHaveLength(2);
    await loadAndCheck(hubFileSet('acme/tiny-lora', opts));
    expect(log.splice(0).every((l) => l.status === 304)).toBe(true);
  });

  test('a commit-hash revision is immutable: once cached, no request at all', async () => {
    const opts = { endpoint, cache: dir };
    const rev = 'acme/tiny-lora@0123456789abcdef0123456789abcdef01234567';
    log.length = 0;
    await loadAndCheck(hubFileSet(rev, opts));
    expect(log.splice(0).filter((l) => l.status === 200)).toHaveLength(2);
    await loadAndCheck(hubFileSet(rev, opts));
    expect(log).toEqual([]);
  });

  test('offline: when the request fails, the cached copy is used; uncached files fail with IoError read_failed', async () => {
    const offline: typeof fetch = () => Promise.reject(new TypeError('fetch failed'));
    await loadAndCheck(hubFileSet('acme/tiny-lora', { endpoint, cache: dir, fetch: offline }));
    const e = await LoRAContainer.fromPEFT(hubFileSet('acme/other', { endpoint, cache: dir, fetch: offline })).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(IoError);
    expect(e).toMatchObject({ code: 'read_failed' });
    expect((e as IoError).file).toContain('/acme/other/resolve/main/');
  });

  test('a cache entry whose bytes do not match its record is a miss, not trusted', async () => {
    const own = mkdtempSync(join(tmpdir(), 'peftjs-hub-cache-'));
    try {
      const cache = nodeDirCache(own);
      await cache.put('http://x/a', new Uint8Array([1, 2, 3]), '"e"');
      const hit = await cache.get('http://x/a');
      expect(hit?.etag).toBe('"e"');
      expect(Array.from(await hit!.source.read(0, 3))).toEqual([1, 2, 3]);
      const bin = readdirSync(own).find((f) => f.endsWith('.bin'))!;
      rmSync(join(own, bin));
      expect(await cache.get('http://x/a')).toBeUndefined();
    } finally {
      rmSync(own, { recursive: true, force: true });
    }
  });

  test('any HubCache can be passed (here a Map): what it stores is what the next load reads', async () => {
    const store = new Map<string, { bytes: Uint8Array; etag?: string }>();
    const cache: HubCache = {
      kind: 'map',
      get: async (url) => {
        const e = store.get(url);
        return e && { source: { name: url, size: e.bytes.byteLength, read: async (s, end) => e.bytes.subarray(s, end) }, etag: e.etag };
      },
      put: async (url, bytes, etag) => void store.set(url, { bytes, etag }),
    };
    await loadAndCheck(hubFileSet('acme/tiny-lora', { endpoint, cache }));
    expect([...store.keys()].map((u) => u.slice(endpoint.length)).sort()).toEqual([
      '/acme/tiny-lora/resolve/main/adapter_config.json',
      '/acme/tiny-lora/resolve/main/adapter_model.safetensors',
    ]);
    expect([...store.values()].every((v) => /^"v2-\d+"$/.test(v.etag ?? ''))).toBe(true);
  });
});
