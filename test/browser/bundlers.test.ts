// esbuild, Vite, webpack 5 and Rollup each bundle test/browser/bundlers/app.js against the packed peftjs with
// their browser defaults and no peftjs-specific configuration; each bundle then runs in headless Chromium,
// loads an adapter over HTTP and runs a forward. A bundler warning fails the test as an error would.
// webpack 5 and Vite also bundle worker-app.js (peftjs/worker): the worker script is theirs to find and emit.
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import nodeResolve from '@rollup/plugin-node-resolve';
import { build as esbuild } from 'esbuild';
import { rollup } from 'rollup';
import { build as viteBuild, createLogger } from 'vite';
import webpack from 'webpack';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { scratchApp, ROOT } from '../package/packed.js';
import { startHarness, type Harness } from './harness.js';

let h: Harness;
let app: ReturnType<typeof scratchApp>;
beforeAll(async () => {
  app = scratchApp('bundlers');
  copyFileSync(join(ROOT, 'test/browser/bundlers/app.js'), join(app.dir, 'app.js'));
  copyFileSync(join(ROOT, 'test/runtimes/smoke.mjs'), join(app.dir, 'smoke.mjs'));
  copyFileSync(join(ROOT, 'test/browser/bundlers/worker-app.js'), join(app.dir, 'worker-app.js'));
  h = await startHarness();
});
afterAll(async () => {
  await h?.close();
  app?.cleanup();
});

/** Writes `out/<name>/index.html` loading `script` (unless the bundler wrote its own page) and returns its URL. */
function page(name: string, script?: { src: string; module: boolean }): string {
  const dir = join(app.dir, 'out', name);
  if (script) writeFileSync(join(dir, 'index.html'), `<!doctype html><meta charset="utf-8"><script ${script.module ? 'type="module" ' : ''}src="./${script.src}"></script>\n`);
  return `${h.base}/${relative(ROOT, dir)}/index.html`;
}

type Smoke = { backend?: string; maxErr: number; tol: number; offEqualsBase: boolean; modules?: number; scales?: number[] };

async function runInChromium(url: string): Promise<void> {
  const p = await h.context.newPage();
  const errors: string[] = [];
  p.on('pageerror', (e) => errors.push(String(e)));
  try {
    await p.goto(url);
    await p.waitForFunction(() => (window as unknown as { __result?: unknown }).__result !== undefined, undefined, { timeout: 60_000 });
    const res = (await p.evaluate(() => (window as unknown as { __result: unknown }).__result)) as { kernel: Smoke; golden: Smoke; local: string; error?: string };
    expect(errors).toEqual([]);
    expect(res.error).toBeUndefined();
    expect(res.kernel.backend).toBe('wasm');
    expect(res.kernel.offEqualsBase).toBe(true);
    expect(res.kernel.maxErr).toBeLessThanOrEqual(res.kernel.tol);
    expect(res.golden.modules).toBe(4);
    expect(res.golden.offEqualsBase).toBe(true);
    expect(res.golden.maxErr).toBeLessThanOrEqual(res.golden.tol);
    expect(res.local).toBe('IoError:unsupported_source');
  } finally {
    await p.close();
  }
}

/** The bundle resolved peftjs's `browser` build: no Node module, and the browser twin's message is in it. */
function expectBrowserBuild(file: string): void {
  const js = readFileSync(file, 'utf8');
  expect(js).not.toMatch(/["'`]node:[a-z/_]+["'`]/);
  expect(js).toContain('local paths need Node, Deno or Bun');
}

test('esbuild (platform browser)', async () => {
  const outfile = join(app.dir, 'out/esbuild/app.js');
  const r = await esbuild({ entryPoints: [join(app.dir, 'app.js')], outfile, bundle: true, format: 'esm', platform: 'browser', logLevel: 'silent' });
  expect(r.errors).toEqual([]);
  expect(r.warnings).toEqual([]);
  expectBrowserBuild(outfile);
  await runInChromium(page('esbuild', { src: 'app.js', module: true }));
});

test('Vite (vite build)', async () => {
  const warnings: string[] = [];
  const logger = createLogger('warn', { allowClearScreen: false });
  logger.warn = (msg) => void warnings.push(msg);
  logger.warnOnce = (msg) => void warnings.push(msg);
  logger.error = (msg) => void warnings.push(`error: ${msg}`);
  writeFileSync(join(app.dir, 'index.html'), '<!doctype html><meta charset="utf-8"><script type="module" src="./app.js"></script>\n');
  await viteBuild({
    root: app.dir,
    base: './',
    configFile: false,
    customLogger: logger,
    logLevel: 'warn',
    build: {
      outDir: join(app.dir, 'out/vite'),
      emptyOutDir: true,
      // The wasm is inlined (≈ 400 kB of base64): the app is one chunk over Vite's 500 kB advice, by design.
      chunkSizeWarningLimit: 4096,
    },
  });
  expect(warnings).toEqual([]);
  const html = readFileSync(join(app.dir, 'out/vite/index.html'), 'utf8');
  const src = /src="\.\/([^"]+\.js)"/.exec(html)?.[1];
  expect(src).toBeDefined();
  expectBrowserBuild(join(app.dir, 'out/vite', src!));
  await runInChromium(page('vite'));
});

test('webpack 5 (target web)', async () => {
  const compiler = webpack({
    mode: 'production',
    context: app.dir,
    entry: './app.js',
    target: 'web',
    output: { path: join(app.dir, 'out/webpack'), filename: 'main.js' },
    // Minifying 1 MB costs CI time and proves nothing about resolution; size hints concern the app, not peftjs.
    optimization: { minimize: false },
    performance: { hints: false },
  });
  const stats = await new Promise<webpack.Stats>((ok, fail) => compiler.run((err, s) => (err ? fail(err) : ok(s!))));
  await new Promise<void>((ok) => compiler.close(() => ok()));
  const info = stats.toJson({ all: false, errors: true, warnings: true });
  expect((info.errors ?? []).map((e) => e.message)).toEqual([]);
  expect((info.warnings ?? []).map((w) => w.message)).toEqual([]);
  expectBrowserBuild(join(app.dir, 'out/webpack/main.js'));
  await runInChromium(page('webpack', { src: 'main.js', module: false }));
});

test('Rollup (@rollup/plugin-node-resolve, browser: true)', async () => {
  const warnings: string[] = [];
  const bundle = await rollup({
    input: join(app.dir, 'app.js'),
    plugins: [nodeResolve({ browser: true })],
    // zod's own sources draw two Rollup notes (a comment placement, a circular import inside zod): not ours to fix.
    onwarn: (w) => {
      const files = [w.id, ...(w.ids ?? [])].filter((f): f is string => !!f);
      if (!(files.length && files.every((f) => f.includes('/node_modules/zod/')))) warnings.push(`${w.code}: ${w.message}`);
    },
  });
  await bundle.write({ file: join(app.dir, 'out/rollup/app.js'), format: 'es' });
  await bundle.close();
  expect(warnings).toEqual([]);
  expectBrowserBuild(join(app.dir, 'out/rollup/app.js'));
  await runInChromium(page('rollup', { src: 'app.js', module: true }));
});

const oracle = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/models/pycoder/oracle.json'), 'utf8')) as { prompts: { text: string; greedy_on_text: string }[] };

/** Runs a bundled worker-app.js page: the oracle text from the worker, a typed error of the page's own class. */
async function runWorkerApp(url: string): Promise<string[]> {
  const p = await h.context.newPage();
  const errors: string[] = [];
  const workers: string[] = [];
  p.on('pageerror', (e) => errors.push(String(e)));
  // Script workers only: the wasm backend's thread workers (Blob URLs, in cross-origin isolated pages) aside.
  p.on('worker', (w) => {
    if (!w.url().startsWith('blob:') && /\.m?js(\?|$)/.test(new URL(w.url()).pathname + new URL(w.url()).search)) workers.push(w.url());
  });
  try {
    await p.goto(url);
    await p.waitForFunction(() => (window as unknown as { __result?: unknown }).__result !== undefined, undefined, { timeout: 60_000 });
    const res = await p.evaluate(() => (window as unknown as { __result: unknown }).__result);
    expect(errors).toEqual([]);
    expect(res).toEqual({ text: oracle.prompts[0]!.greedy_on_text, error: 'ModelError:bad_option', sameClass: true });
    return workers;
  } finally {
    await p.close();
  }
}

test('peftjs/worker with webpack 5: the worker script is found by new URL(…, import.meta.url) and bundled', async () => {
  const compiler = webpack({
    mode: 'production',
    context: app.dir,
    entry: './worker-app.js',
    target: 'web',
    output: { path: join(app.dir, 'out/webpack-worker'), filename: 'main.js' },
    optimization: { minimize: false },
    performance: { hints: false },
  });
  const stats = await new Promise<webpack.Stats>((ok, fail) => compiler.run((err, s) => (err ? fail(err) : ok(s!))));
  await new Promise<void>((ok) => compiler.close(() => ok()));
  const info = stats.toJson({ all: false, errors: true, warnings: true });
  expect((info.errors ?? []).map((e) => e.message)).toEqual([]);
  expect((info.warnings ?? []).map((w) => w.message)).toEqual([]);
  const workers = await runWorkerApp(page('webpack-worker', { src: 'main.js', module: false }));
  expect(workers).toHaveLength(1);
  expect(workers[0]).toContain('/out/webpack-worker/'); // the bundled worker, not a file of node_modules
});

test('peftjs/worker with Vite (vite build): the worker is emitted as its own chunk', async () => {
  const warnings: string[] = [];
  const logger = createLogger('warn', { allowClearScreen: false });
  logger.warn = (msg) => void warnings.push(msg);
  logger.warnOnce = (msg) => void warnings.push(msg);
  logger.error = (msg) => void warnings.push(`error: ${msg}`);
  writeFileSync(join(app.dir, 'worker.html'), '<!doctype html><meta charset="utf-8"><script type="module" src="./worker-app.js"></script>\n');
  await viteBuild({
    root: app.dir,
    base: './',
    configFile: false,
    customLogger: logger,
    logLevel: 'warn',
    build: { outDir: join(app.dir, 'out/vite-worker'), emptyOutDir: true, chunkSizeWarningLimit: 4096, rollupOptions: { input: join(app.dir, 'worker.html') } },
  });
  expect(warnings).toEqual([]);
  const workers = await runWorkerApp(`${h.base}/${relative(ROOT, join(app.dir, 'out/vite-worker'))}/worker.html`);
  expect(workers).toHaveLength(1);
  expect(workers[0]).toContain('/out/vite-worker/');
});
