import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBackend } from '../../src/backends/index.js';
import { LoRAContainer } from '../../src/adapter/container.js';
import { CausalLM } from '../../src/models/causal-lm.js';

// A dev server with a single-page-app fallback (Vite's default) answers every missing file with index.html and 200.
const ROOT = new URL('../../', import.meta.url).pathname;
let server: Server;
let base: string;
beforeAll(async () => {
  server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url!, 'http://x').pathname);
    try {
      const body = readFileSync(`${ROOT}${path}`);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length }).end(body);
    } catch {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end('<!doctype html><html><body>app</body></html>');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});
afterAll(() => server.close());

describe('HTML where a file should be', () => {
  it('a missing adapter file is an IoError html_response naming the URL, with a hint, before any parsing', async () => {
    const e = await LoRAContainer.fromPEFT(`${base}test/fixtures/golden/basic/nope/`).catch((x) => x);
    expect(e).toMatchObject({ code: 'html_response', file: expect.stringContaining(`${base}test/fixtures/golden/basic/nope/`) });
    expect(e.message).toContain('single-page-app');
  });

  it('CausalLM.load treats optional files behind the fallback as absent and loads', async () => {
    const lm = await CausalLM.load(`${base}test/fixtures/models/tiny-llama/base/`, { backend: await createBackend('js') });
    expect(lm.config.layers).toBe(2);
  });
});
