// The published package, checked as consumers meet it: publint and arethetypeswrong on `npm pack`, the types of
// the tarball under every TypeScript module mode (CJS and ESM, skipLibCheck off), and the browser builds free of
// Node modules. Needs dist/ (npm test builds first).
import { execFile } from 'node:child_process';
import { copyFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { publint } from 'publint';
import { formatMessage } from 'publint/utils';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ROOT, scratchApp } from './packed.js';

const run = promisify(execFile);
const bin = (name: string) => join(ROOT, 'node_modules/.bin', name);

test('publint: no errors, warnings or suggestions', async () => {
  const { messages, pkg } = await publint({ pkgDir: ROOT, pack: 'npm', level: 'suggestion' });
  expect(messages.map((m) => formatMessage(m, pkg))).toEqual([]);
});

test('arethetypeswrong --pack: no problem for any entry point under node10, node16 (CJS and ESM) and bundler', async () => {
  // attw exits non-zero when it finds a problem; the JSON says which.
  const r = await run(bin('attw'), ['--pack', '.', '--format', 'json'], { cwd: ROOT, maxBuffer: 64 << 20 }).catch((e: { stdout: string }) => e);
  const json = JSON.parse(r.stdout) as { analysis: { problems: unknown[]; entrypoints: Record<string, unknown> } };
  expect(json.analysis.problems).toEqual([]);
  expect(Object.keys(json.analysis.entrypoints).sort()).toEqual(['.', './package.json', './standalone', './worker']);
});

describe('a consumer type-checks against the tarball (CJS .cts and ESM .mts, skipLibCheck false, lib es2022 + dom)', () => {
  let app: ReturnType<typeof scratchApp>;
  beforeAll(() => {
    app = scratchApp('types', ['@types/node', 'undici-types']);
    for (const f of readdirSync(join(ROOT, 'test/package/consumer'))) copyFileSync(join(ROOT, 'test/package/consumer', f), join(app.dir, f));
  });
  afterAll(() => app?.cleanup());

  // [module, moduleResolution, @types/node too?]: `preserve` is what bundler resolution pairs with for .cts files.
  const modes = [
    ['node16', 'node16', false],
    ['nodenext', 'nodenext', true],
    ['preserve', 'bundler', false],
  ] as const;
  test.each(modes)('module %s, moduleResolution %s (@types/node: %s)', async (module, moduleResolution, node) => {
    const config = {
      compilerOptions: {
        target: 'es2022',
        module,
        moduleResolution,
        lib: ['es2022', 'dom'],
        types: node ? ['node'] : [],
        strict: true,
        skipLibCheck: false,
        noEmit: true,
        traceResolution: true,
      },
      files: ['esm.mts', 'cjs.cts'],
    };
    const file = `tsconfig.${module}.json`;
    writeFileSync(join(app.dir, file), JSON.stringify(config));
    const r = await run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', file], { cwd: app.dir, maxBuffer: 256 << 20 }).catch(
      (e: { stdout: string }) => e,
    );
    const errors = r.stdout.split('\n').filter((l) => /error TS\d+/.test(l));
    expect(errors).toEqual([]);
    // Each file got the declaration file of its own module kind.
    const resolved = [...r.stdout.matchAll(/Module name '(peftjs[^']*)' was successfully resolved to '[^']*node_modules\/peftjs\/([^']*)'/g)].map((m) => `${m[1]} → ${m[2]}`);
    expect(new Set(resolved)).toEqual(
      new Set(['peftjs → dist/index.d.ts', 'peftjs → dist/index.d.cts', 'peftjs/standalone → dist/index.d.ts', 'peftjs/worker → dist/worker.d.ts', 'peftjs/worker → dist/worker.d.cts']),
    );
  });
});

test('the browser builds (dist/index.browser.js, dist/peftjs.standalone.js, the worker ones) name no Node module', () => {
  for (const f of ['dist/index.browser.js', 'dist/peftjs.standalone.js', 'dist/worker.browser.js', 'dist/worker-script.browser.js']) {
    const js = readFileSync(join(ROOT, f), 'utf8');
    expect(js.match(/["'`]node:[a-z/_]+["'`]/g) ?? [], f).toEqual([]);
    expect(js.match(/\brequire\(\s*["'`]/g) ?? [], f).toEqual([]);
  }
  // The Node builds keep the `node:` prefix (a bare "fs" would send browser bundlers looking for an npm package).
  expect(readFileSync(join(ROOT, 'dist/index.js'), 'utf8')).toContain('import("node:fs/promises")');
});

test('every browser twin (src/**/x.browser.ts) exports the same names as x.ts', async () => {
  const twins = readdirSync(join(ROOT, 'src'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.browser.ts'));
  expect(twins.length).toBeGreaterThan(0);
  for (const twin of twins) {
    const node = (await import(join(ROOT, 'src', twin.replace(/\.browser\.ts$/, '.ts')))) as object;
    const browser = (await import(join(ROOT, 'src', twin))) as object;
    expect(Object.keys(browser).sort(), twin).toEqual(Object.keys(node).sort());
  }
});

test('the worker builds import the library from the bundle beside them (one copy of each error class), nothing else', () => {
  const imports = (f: string) => [...readFileSync(join(ROOT, f), 'utf8').matchAll(/(?:\bfrom|\bimport\(?|\brequire\()\s*["'`]([^"'`]+)["'`]/g)].map((m) => m[1]);
  expect(new Set(imports('dist/worker.js'))).toEqual(new Set(['./index.js', 'node:worker_threads']));
  expect(new Set(imports('dist/worker.cjs'))).toEqual(new Set(['./index.cjs', 'node:worker_threads']));
  expect(new Set(imports('dist/worker.browser.js'))).toEqual(new Set(['./index.browser.js']));
  expect(imports('dist/worker-script.js')).toEqual(['./index.js']);
  expect(imports('dist/worker-script.browser.js')).toEqual(['./peftjs.standalone.js']);
});

describe('peftjs/worker from the tarball, in Node (ESM and CJS): the shipped worker script runs the model', () => {
  let app: ReturnType<typeof scratchApp>;
  beforeAll(() => {
    app = scratchApp('worker');
  });
  afterAll(() => app?.cleanup());
  const oracle = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/models/pycoder/oracle.json'), 'utf8')) as { prompts: { text: string; greedy_on_text: string }[] };
  const p0 = oracle.prompts[0]!;
  // No terminate(): an idle worker must not keep the process alive (the process exits by itself).
  const body = (imp: string) => `${imp}
const lm = await WorkerLM.load(${JSON.stringify(join(ROOT, 'models/pycoder/base'))}, { weightDtype: 'bf16', adapters: [{ name: 'prose', source: ${JSON.stringify(join(ROOT, 'models/pycoder/adapter'))} }] });
const { text } = await lm.generate(${JSON.stringify(p0.text)}, { maxNewTokens: 64 });
const e = await lm.generate('x', { topK: -1 }).catch((e) => e);
console.log(JSON.stringify({ text, sameClass: e instanceof peft.ModelError && e instanceof ModelError, code: e.code }));`;
  test.each([
    ['esm.mjs', body("import * as peft from 'peftjs'; import { WorkerLM, ModelError } from 'peftjs/worker';")],
    ['cjs.cjs', `(async () => { ${body("const peft = require('peftjs'); const { WorkerLM, ModelError } = require('peftjs/worker');")} })();`],
  ])('%s', async (file, src) => {
    writeFileSync(join(app.dir, file), src);
    const r = await run(process.execPath, [file], { cwd: app.dir, timeout: 60_000 });
    expect(JSON.parse(r.stdout)).toEqual({ text: p0.greedy_on_text, sameClass: true, code: 'bad_option' });
  });
});
