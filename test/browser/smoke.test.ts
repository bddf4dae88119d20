import { afterAll, beforeAll, expect, test } from 'vitest';
import { startHarness, type Harness } from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

test('chromium: dist/peftjs.standalone.js loads its wasm; lora_linear matches float64; fromPEFT(url) → apply → golden y_on', async () => {
  const page = await h.context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${h.base}/test/browser/smoke.html`);
  await page.waitForFunction(() => (window as unknown as { __result?: unknown }).__result !== undefined, undefined, { timeout: 60_000 });
  type Smoke = { backend?: string; maxErr: number; tol: number; offEqualsBase: boolean; modules?: number; scales?: number[] };
  const res = (await page.evaluate(() => (window as unknown as { __result: unknown }).__result)) as { kernel?: Smoke; golden?: Smoke; error?: string };
  expect(errors).toEqual([]);
  expect(res.error).toBeUndefined();
  const { kernel, golden } = res as { kernel: Smoke; golden: Smoke };
  expect(kernel.backend).toBe('wasm');
  expect(kernel.offEqualsBase).toBe(true);
  expect(kernel.maxErr).toBeLessThanOrEqual(kernel.tol);
  expect(golden.modules).toBe(4);
  expect(golden.scales).toEqual([2, 2, 2, 2]);
  expect(golden.offEqualsBase).toBe(true);
  expect(golden.maxErr).toBeLessThanOrEqual(golden.tol);
  expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
  await page.close();
});
