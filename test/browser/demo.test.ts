// The browser demo (examples/demo) as a user meets it: built with Vite, served from 127.0.0.1 (COOP/COEP), pycoder
// fetched over HTTP, a prompt typed, the LoRA switch flipped, and the streamed text checked against what
// transformers computed (the oracle's greedy continuations). PEFTJS_SCREENSHOT=1 also writes docs/demo.png.
import { mkdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Page } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startHarness, type Harness } from './harness.js';

const ROOT = resolve(import.meta.dirname, '../..');
const OUT = resolve(ROOT, 'test/artifacts/demo');
const oracle = JSON.parse(readFileSync(resolve(ROOT, 'test/fixtures/models/pycoder/oracle.json'), 'utf8')) as {
  n_new: number;
  prompts: { text: string; greedy_off: number[]; greedy_on: number[]; greedy_off_text: string; greedy_on_text: string }[];
};

let h: Harness;
beforeAll(async () => {
  await build({ configFile: resolve(ROOT, 'examples/demo/vite.config.ts'), logLevel: 'error', build: { outDir: OUT } });
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

const state = (page: Page) => page.evaluate(() => document.body.dataset.state);

/** Sets the switch by clicking it as a user would, types the prompt, presses Generate and waits for the end. */
async function run(page: Page, prompt: string, lora: boolean): Promise<{ text: string; count: string; tps: string; mutations: number; status: string }> {
  if ((await page.locator('#lora').isChecked()) !== lora) await page.locator('label.switch').click();
  expect(await page.locator('#lora').isChecked()).toBe(lora);
  await page.locator('#prompt').fill('');
  await page.locator('#prompt').pressSequentially(prompt);
  // Count DOM updates of the output while it streams (one per chunk), independent of the app's own bookkeeping.
  await page.evaluate(() => {
    const w = window as unknown as { __mutations: number };
    w.__mutations = 0;
    new MutationObserver((m) => (w.__mutations += m.length)).observe(document.getElementById('gen')!, { childList: true, characterData: true, subtree: true });
  });
  await page.locator('#go').click();
  await page.waitForFunction(() => document.body.dataset.state === 'done', undefined, { timeout: 30_000 });
  return page.evaluate(() => ({
    text: document.getElementById('gen')!.textContent ?? '',
    count: document.getElementById('count')!.textContent ?? '',
    tps: document.getElementById('tps')!.textContent ?? '',
    mutations: (window as unknown as { __mutations: number }).__mutations,
    status: document.getElementById('status')!.textContent ?? '',
  }));
}

test('chromium: the Vite demo loads pycoder over HTTP and streams the oracle greedy text, LoRA off (code) and on (prose)', async () => {
  const page = await h.context.newPage();
  await page.setViewportSize({ width: 980, height: 640 });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => m.type() === 'error' && !m.text().includes('404') && errors.push(m.text()));
  // The loader asks for the optional files a checkpoint may have; only those may be missing.
  const missing: string[] = [];
  page.on('response', (r) => r.status() === 404 && missing.push(new URL(r.url()).pathname.split('/').pop()!));
  const n = oracle.n_new;
  const p0 = oracle.prompts[0];
  expect(p0.text).toBe('def ');
  expect(p0.greedy_off.length).toBe(n);

  await page.goto(`${h.base}/test/artifacts/demo/index.html?max=${n}`);
  await page.waitForFunction(() => document.body.dataset.state !== 'loading', undefined, { timeout: 30_000 });
  expect(await state(page), await page.locator('#status').textContent() ?? '').toBe('ready');
  expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
  expect(await page.locator('#bar').evaluate((b: HTMLProgressElement) => b.value)).toBe(1);
  expect(await page.locator('#max').inputValue()).toBe(String(n));

  const off = await run(page, p0.text, false);
  expect(off.text).toBe(p0.greedy_off_text);
  expect(off.count).toBe(String(n));
  expect(off.mutations).toBeGreaterThan(1); // streamed, not written once at the end
  expect(Number(off.tps)).toBeGreaterThan(0);
  expect(await page.locator('#shown-prompt').textContent()).toBe(p0.text);

  const on = await run(page, p0.text, true);
  expect(on.text).toBe(p0.greedy_on_text);
  expect(on.count).toBe(String(n));
  expect(on.mutations).toBeGreaterThan(1);
  console.info(`demo: LoRA off ${off.tps} tokens/s, on ${on.tps} tokens/s (${off.status})`);

  // WebGPU is offered only when it works: enabled with no reason, or disabled with the reason shown.
  await page.waitForFunction(() => document.getElementById('webgpu-reason')!.textContent !== 'checking WebGPU…', undefined, { timeout: 20_000 });
  const gpu = await page.evaluate(() => ({
    disabled: (document.querySelector('input[value=webgpu]') as HTMLInputElement).disabled,
    reason: document.getElementById('webgpu-reason')!.textContent ?? '',
  }));
  if (gpu.disabled) expect(gpu.reason).toMatch(/^WebGPU (unavailable|failed): \S/);
  else expect(gpu.reason).toBe('');

  if (process.env.PEFTJS_SCREENSHOT === '1') {
    mkdirSync(resolve(ROOT, 'docs'), { recursive: true });
    await page.screenshot({ path: resolve(ROOT, 'docs/demo.png'), fullPage: true });
  }
  expect(errors).toEqual([]);
  expect(missing.filter((f) => f !== 'model.safetensors.index.json')).toEqual([]); // a sharded checkpoint's index
  await page.close();
});

test('chromium without navigator.gpu: WebGPU is shown disabled with the reason, wasm still runs', async () => {
  const page = await h.context.newPage();
  await page.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined }));
  await page.goto(`${h.base}/test/artifacts/demo/index.html?max=4&backend=webgpu`);
  await page.waitForFunction(() => document.body.dataset.state !== 'loading', undefined, { timeout: 30_000 });
  expect(await state(page)).toBe('ready');
  expect(await page.locator('input[value=webgpu]').isDisabled()).toBe(true);
  expect(await page.locator('input[value=wasm]').isChecked()).toBe(true);
  expect(await page.locator('#webgpu-reason').textContent()).toBe('WebGPU unavailable: navigator.gpu is absent in this browser');
  const r = await run(page, 'import ', false);
  expect(r.count).toBe('4');
  await page.close();
});
