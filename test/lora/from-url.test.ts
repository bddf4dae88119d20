// LoRAContainer.fromPEFT(url) end to end, against a real node:http server on 127.0.0.1: the adapter loaded over
// HTTP equals the one loaded from the directory, and HTTP failures come back typed (never a half-loaded adapter).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init } from '../../src/backends/index.js';
import { IoError, PeftError } from '../../src/errors.js';
import { LoRAContainer } from '../../src/adapter/container.js';
import { REAL } from './helpers.js';

const DIR = join(REAL, 'opt125m-bf16');
const FILES: Record<string, Buffer> = {
  'adapter_config.json': readFileSync(join(DIR, 'adapter_config.json')),
  'adapter_model.safetensors': readFileSync(join(DIR, 'adapter_model.safetensors')),
};
let server: Server;
let base: string;

beforeAll(async () => {
  await init();
  server = createServer((req, res) => {
    const [, mode, file] = /^\/([^/]+)\/(.*)$/.exec(new URL(req.url!, 'http://x').pathname) ?? [];
    const body = FILES[file ?? ''];
    if (mode === 'fail500') return void res.writeHead(500).end('boom');
    if (!body || mode === 'missing') return void res.writeHead(404).end();
    if (mode === 'truncated' && file === 'adapter_model.safetensors') {
      res.writeHead(200, { 'Content-Length': body.length });
      res.write(body.subarray(0, body.length >> 1));
      setTimeout(() => res.destroy(), 20);
      return;
    }
    if (mode === 'slow' && file === 'adapter_model.safetensors') {
      res.writeHead(200, { 'Content-Length': body.length });
      res.write(body.subarray(0, 1024)); // then nothing: the client must abort
      return;
    }
    res.writeHead(200, { 'Content-Length': body.length }).end(body);
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((ok) => { server.closeAllConnections(); server.close(() => ok()); }));

async function failure(p: Promise<unknown>): Promise<PeftError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof PeftError) return e;
    throw e;
  }
  throw new Error('expected a rejection');
}

describe('LoRAContainer.fromPEFT(url)', () => {
  it('200: the same modules, scales and bytes as from the directory; progress reaches the total', { timeout: 20_000 }, async () => {
    const progress: { loaded: number; total?: number }[] = [];
    const fromUrl = await LoRAContainer.fromPEFT(`${base}/ok/`, { onProgress: (p: { loaded: number; total?: number }) => progress.push(p) });
    const fromDir = await LoRAContainer.fromPEFT(DIR);
    expect(fromUrl.spec.modules.length).toBe(24); // 12 OPT decoder layers × {q_proj, v_proj}
    expect(fromUrl.spec.modules.map((m) => [m.path, m.rank, m.scale])).toEqual(fromDir.spec.modules.map((m) => [m.path, m.rank, m.scale]));
    fromUrl.spec.modules.forEach((m, i) => {
      expect(Buffer.compare(m.a.storage.bytes(), fromDir.spec.modules[i]!.a.storage.bytes())).toBe(0);
      expect(Buffer.compare(m.b.storage.bytes(), fromDir.spec.modules[i]!.b.storage.bytes())).toBe(0);
    });
    const last = progress.at(-1);
    expect(last?.loaded).toBe(FILES['adapter_model.safetensors']!.length);
  });

  it('404: the adapter is missing → typed error naming the file', async () => {
    const e = await failure(LoRAContainer.fromPEFT(`${base}/missing/`));
    expect(e.code).toBe('config_missing');
    expect(e.message).toContain('adapter_config.json');
  });

  it('500: IoError http_error with the status', async () => {
    const e = await failure(LoRAContainer.fromPEFT(`${base}/fail500/`));
    expect(e).toBeInstanceOf(IoError);
    expect(e.code).toBe('http_error');
    expect(e.got).toBe(500);
  });

  it('truncated body: IoError truncated', { timeout: 10_000 }, async () => {
    const e = await failure(LoRAContainer.fromPEFT(`${base}/truncated/`));
    expect(e).toBeInstanceOf(IoError);
    expect(e.code).toBe('truncated');
  });

  it('slow body + abort: IoError aborted (the server never finishes: only the abort ends the load)', { timeout: 10_000 }, async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 150);
    const e = await failure(LoRAContainer.fromPEFT(`${base}/slow/`, { signal: ac.signal }));
    expect(e.code).toBe('aborted');
  });
  it('load() and fromMLX() pass signal and fetch through to the loader (issue 8 #12)', { timeout: 10_000 }, async () => {
    for (const load of [LoRAContainer.load, LoRAContainer.fromPEFT] as const) {
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 150);
      const e = await failure(load.call(LoRAContainer, `${base}/slow/`, { signal: ac.signal }));
      expect(e.code).toBe('aborted');
    }
    // A fetch that records what it was asked: the loader used it, not globalThis.fetch.
    for (const load of [LoRAContainer.load, LoRAContainer.fromMLX] as const) {
      const asked: string[] = [];
      const f: typeof fetch = (u, init) => (asked.push(String(u)), fetch(u, init));
      await load.call(LoRAContainer, `${base}/ok/`, { fetch: f }).catch(() => undefined); // fromMLX: a PEFT folder is a ConfigError
      expect(asked.length).toBeGreaterThan(0);
      expect(asked[0]).toBe(`${base}/ok/adapter_config.json`);
    }
  });
});
