// peftjs/worker in Chromium: WorkerLM on the page, pycoder and its prose LoRA in a module Web Worker (the shipped
// dist/worker-script.browser.js), fetched over HTTP; the streamed text must be the oracle's (transformers + PEFT).
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startHarness, type Harness } from './harness.js';

const ROOT = resolve(import.meta.dirname, '../..');
const oracle = JSON.parse(readFileSync(resolve(ROOT, 'test/fixtures/models/pycoder/oracle.json'), 'utf8')) as {
  n_new: number;
  prompts: { text: string; greedy_off_text: string; greedy_on_text: string }[];
};

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

test('chromium: WorkerLM runs pycoder in a Web Worker and streams the oracle greedy text, LoRA off and on', async () => {
  const page = await h.context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const workers: string[] = [];
  // The model's worker only: the wasm backend's own thread workers (Blob URLs, cross-origin isolated pages) aside.
  page.on('worker', (w) => {
    if (/\.m?js$/.test(new URL(w.url()).pathname)) workers.push(new URL(w.url()).pathname);
  });
  await page.goto(`${h.base}/test/browser/worker.html`);
  await page.waitForFunction(() => (window as unknown as { __result?: unknown }).__result !== undefined, undefined, { timeout: 60_000 });
  type Result = {
    error?: string;
    texts: { off: string; on: string };
    chunks: number;
    inWebWorker: boolean;
    backend: string;
    thrown: { name: string; code: string; key: string; sameClass: boolean };
    logits: { isF32: boolean; length: number; ownBuffer: boolean };
    progress: { files: string[]; last: { loaded: number; total: number } };
    afterTerminate: string;
  };
  const res = (await page.evaluate(() => (window as unknown as { __result: unknown }).__result)) as Result;
  expect(res.error).toBeUndefined();
  expect(errors).toEqual([]);
  const p0 = oracle.prompts[0]!;
  expect(p0.text).toBe('def ');
  expect(res.texts).toEqual({ off: p0.greedy_off_text, on: p0.greedy_on_text });
  expect(res.chunks).toBe(2 * oracle.n_new); // streamed token by token
  expect(res.inWebWorker).toBe(true);
  expect(workers).toEqual(['/dist/worker-script.browser.js']);
  expect(res.backend).toBe('wasm');
  // A ModelError thrown in the worker is a ModelError of the page's peftjs (the same class object).
  expect(res.thrown).toEqual({ name: 'ModelError', code: 'bad_option', key: 'temperature', sameClass: true });
  expect(res.logits).toEqual({ isF32: true, length: 2 * 2048, ownBuffer: true });
  expect(res.progress.files).toContain('model.safetensors');
  expect(res.progress.files).toContain('adapter:prose');
  expect(res.progress.last.loaded).toBe(res.progress.last.total);
  expect(res.afterTerminate).toBe('WorkerError:terminated');
  await page.close();
});
