import { afterAll, beforeAll, expect, test } from 'vitest';
import { startHarness, type Harness } from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

test('chromium: dist/peftjs.standalone.js loads its wasm and one lora_linear matches the float64 reference', async () => {
  const page = await h.context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${h.base}/test/browser/smoke.html`);
  await page.waitForFunction(() => (window as unknown as { __result?: unknown }).__result !== undefined, undefined, { timeout: 60_000 });
  const res = (await page.evaluate(() => (window as unknown as { __result: unknown }).__result)) as {
    backend?: string; maxErr?: number; tol?: number; ok?: boolean; offEqualsBase?: boolean; error?: string;
  };
  expect(errors).toEqual([]);
  expect(res.error).toBeUndefined();
  expect(res.backend).toBe('wasm');
  expect(res.offEqualsBase).toBe(true);
  expect(res.maxErr!).toBeLessThanOrEqual(res.tol!);
  expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
  await page.close();
});
