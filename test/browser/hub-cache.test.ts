// The Hub source's Cache API store in Chromium (test/browser/hub-cache.html on dist/peftjs.standalone.js).
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startHarness, type Harness } from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
});

test('chromium: hubFileSet(…, { cache: true }) keeps files in the Cache API; offline, the next load reads them', async () => {
  const page = await h.context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${h.base}/test/browser/hub-cache.html`);
  await page.waitForFunction(() => (window as unknown as { __result?: unknown }).__result !== undefined, undefined, { timeout: 60_000 });
  type Summary = { modules: [string, number, number][]; params: number };
  const res = (await page.evaluate(() => (window as unknown as { __result: unknown }).__result)) as {
    error?: string;
    seen: string[];
    keys: string[];
    first: Summary;
    second: Summary;
    uncached: string;
    dirCache: string;
  };
  expect(errors).toEqual([]);
  expect(res.error).toBeUndefined();
  const hub = 'https://huggingface.co/acme/tiny-lora/resolve/main/';
  expect(res.keys).toEqual([`${hub}adapter_config.json`, `${hub}adapter_model.safetensors`]);
  expect(res.seen.every((u) => u.startsWith(hub))).toBe(true);
  // The golden basic case: 4 modules, r = 4, α = 8 → scale 2 (case.json).
  expect(res.first.modules).toHaveLength(4);
  expect(res.first.modules.every(([, r, s]) => r === 4 && s === 2)).toBe(true);
  expect(res.second).toEqual(res.first);
  expect(res.uncached).toBe('IoError:read_failed');
  expect(res.dirCache).toBe('IoError:unsupported_source');
  await page.close();
});
