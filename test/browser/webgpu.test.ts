// Headless Chromium's navigator.gpu (SwiftShader without a GPU) runs the WebGPU backend on every golden case,
// both kernel routes, and the toggle checks (test/browser/webgpu-page.ts, bundled here with esbuild).
import { build } from 'esbuild';
import { resolve } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startHarness, type Harness } from './harness.js';
import type { PageResult } from './webgpu-page.js';

const ROOT = resolve(import.meta.dirname, '../..');
let h: Harness;
beforeAll(async () => {
  await build({
    entryPoints: [resolve(ROOT, 'test/browser/webgpu-page.ts')],
    outfile: resolve(ROOT, 'test/artifacts/webgpu-page.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    logLevel: 'warning',
  });
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

test('chromium webgpu: golden cases on both routes; off bit-identical; 1,000 flips allocate nothing', async () => {
  const page = await h.context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${h.base}/test/browser/webgpu.html`);
  await page.waitForFunction(() => (window as unknown as { __result?: unknown }).__result !== undefined, undefined, { timeout: 110_000 });
  const res = (await page.evaluate(() => (window as unknown as { __result: unknown }).__result)) as PageResult;
  console.info(`chromium webgpu: ${res.checked} checks on ${res.adapter} in ${res.ms} ms`);
  expect(errors).toEqual([]);
  expect(res.error).toBeUndefined();
  expect(res.failures).toEqual([]);
  expect(res.checked).toBeGreaterThanOrEqual(200);
  expect(res.offBitIdentical).toBe(true);
  expect(res.flipsAllocated).toBe(0);
  expect(res.flipsCompiled).toBe(0);
  await page.close();
});
