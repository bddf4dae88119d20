import { existsSync, readFileSync } from 'node:fs';
import { resolve, sep } from 'node:path';
import type { Plugin } from 'esbuild';
import { defineConfig, type Options } from 'tsup';

const pkg = JSON.parse(readFileSync('./package.json', 'utf8')) as { version: string };

const define = { __PEFTJS_VERSION__: JSON.stringify(pkg.version) };

/**
 * The `browser` builds swap every module `x.ts` that has a sibling `x.browser.ts` for that twin (today
 * src/io/node.ts, whose twin has the same exports and no `node:` import). Bundlers that follow the `browser`
 * export condition (esbuild, Vite, webpack 5, Rollup with `browser: true`) then never see a Node module.
 */
const browserTwins: Plugin = {
  name: 'peftjs-browser-twins',
  setup(build) {
    build.onResolve({ filter: /^\.\.?\/.*\.js$/ }, (args) => {
      const twin = resolve(args.resolveDir, args.path.replace(/\.js$/, '.browser.ts'));
      return existsSync(twin) ? { path: twin } : undefined;
    });
  },
};

/**
 * The worker builds import the library from the bundle beside them instead of bundling a copy: in src/worker/,
 * `../errors.js` (peftjs/worker: its re-created errors are then instances of the classes `peftjs` exports) and
 * `../index.js` (the worker script). `beside(format)` names that bundle.
 */
const fromBeside = (beside: (format: string | undefined) => string): Plugin => ({
  name: 'peftjs-from-beside',
  setup(build) {
    build.onResolve({ filter: /^\.\.\/(errors|index)\.js$/ }, (args) =>
      args.importer.includes(`${sep}src${sep}worker${sep}`) ? { path: beside(build.initialOptions.format), external: true } : undefined,
    );
  },
});

const library = {
  platform: 'neutral',
  target: 'es2022',
  esbuildOptions(o) {
    o.mainFields = ['module', 'main'];
  },
  // Keep `node:fs/promises` as written: without the prefix, browser bundlers look for an npm package `fs`.
  removeNodeProtocol: false,
  define,
  splitting: false,
} satisfies Options;

// `peftjs` resolves by export condition (package.json): `browser` → dist/index.browser.js (no Node module
// anywhere in it), `import` → dist/index.js, `require` → dist/index.cjs, each with its own types (.d.ts for
// ESM, .d.cts for CJS). The wasm bytes are inlined (src/runtime/wasm-bytes.ts) and zod stays a dependency.
// `peftjs/standalone` is the browser build with zod bundled and minified, for a plain `<script type="module">`
// with no bundler and no import map.
export default defineConfig([
  {
    ...library,
    entry: { index: 'src/index.ts' },
    format: ['esm', 'cjs'],
    // The public types name GPUDevice/GPUBuffer: point consumers at @webgpu/types (a dependency, types only).
    // Tensor implements Disposable: the lib reference lets `[Symbol.dispose]` type-check under lib es2022.
    dts: { banner: '/// <reference types="@webgpu/types" />\n/// <reference lib="esnext.disposable" />' },
    shims: true,
    external: [/^node:/, 'webgpu', 'zod', '@huggingface/tokenizers'],
  },
  {
    ...library,
    entry: { 'index.browser': 'src/index.ts' },
    format: ['esm'],
    platform: 'browser',
    esbuildPlugins: [browserTwins],
    external: ['webgpu', 'zod', '@huggingface/tokenizers'],
  },
  {
    ...library,
    entry: { 'peftjs.standalone': 'src/index.ts' },
    format: ['esm'],
    platform: 'browser',
    esbuildPlugins: [browserTwins],
    noExternal: ['zod', '@huggingface/tokenizers'],
    external: ['webgpu'],
    minify: true,
    // Error names come from `new.target.name` (IoError, ConfigError…): minified class names would say `L`.
    keepNames: true,
  },
  // peftjs/worker (WorkerLM, the main-thread side) for each condition, and the scripts its workers run.
  {
    ...library,
    entry: { worker: 'src/worker/index.ts' },
    format: ['esm', 'cjs'],
    dts: { banner: '/// <reference lib="esnext.disposable" />' },
    shims: true,
    esbuildPlugins: [fromBeside((f) => (f === 'cjs' ? './index.cjs' : './index.js'))],
    external: [/^node:/],
  },
  {
    ...library,
    entry: { 'worker.browser': 'src/worker/index.ts' },
    format: ['esm'],
    platform: 'browser',
    esbuildPlugins: [fromBeside(() => './index.browser.js'), browserTwins],
  },
  {
    ...library,
    entry: { 'worker-script': 'src/worker/script.ts' },
    format: ['esm'],
    esbuildPlugins: [fromBeside(() => './index.js')],
    external: [/^node:/],
  },
  {
    // A Web Worker runs this as it is, with or without a bundler: it imports the standalone build (zod bundled).
    ...library,
    entry: { 'worker-script.browser': 'src/worker/script.ts' },
    format: ['esm'],
    platform: 'browser',
    esbuildPlugins: [fromBeside(() => './peftjs.standalone.js'), browserTwins],
  },
  {
    entry: { cli: 'src/cli/index.ts' },
    format: ['esm'],
    platform: 'node',
    target: 'node20',
    removeNodeProtocol: false,
    external: ['webgpu', 'zod', '@huggingface/tokenizers'],
    define,
    banner: { js: '#!/usr/bin/env node' },
    splitting: false,
  },
] satisfies Options[]);
