import { readFileSync } from 'node:fs';
import { defineConfig, type Options } from 'tsup';

const pkg = JSON.parse(readFileSync('./package.json', 'utf8')) as { version: string };

const define = { __PEFTJS_VERSION__: JSON.stringify(pkg.version) };

// One neutral build serves Node, Deno, Bun and bundlers: the wasm bytes are inlined (src/runtime/wasm-bytes.ts),
// zod stays a normal dependency, and `node:*` modules stay external, reached only through dynamic import() on the
// runtimes that have them. `peftjs/standalone` is the same code with zod bundled and minified, for a plain
// `<script type="module">` in a browser with no bundler and no import map.
export default defineConfig([
  {
    entry: { index: 'src/index.ts' },
    format: ['esm', 'cjs'],
    // The public types name GPUDevice/GPUBuffer: point consumers at @webgpu/types (a dependency, types only).
    dts: { banner: '/// <reference types="@webgpu/types" />' },
    shims: true,
    platform: 'neutral',
    target: 'es2022',
    esbuildOptions(o) {
      o.mainFields = ['module', 'main'];
    },
    external: [/^node:/, 'webgpu', 'zod', '@huggingface/tokenizers'],
    define,
    splitting: false,
  },
  {
    entry: { 'peftjs.standalone': 'src/index.ts' },
    format: ['esm'],
    platform: 'neutral',
    target: 'es2022',
    esbuildOptions(o) {
      o.mainFields = ['module', 'main'];
    },
    noExternal: ['zod', '@huggingface/tokenizers'],
    external: [/^node:/, 'webgpu'],
    minify: true,
    define,
    splitting: false,
  },
  {
    entry: { cli: 'src/cli/index.ts' },
    format: ['esm'],
    platform: 'node',
    target: 'node20',
    external: ['webgpu', 'zod', '@huggingface/tokenizers'],
    define,
    banner: { js: '#!/usr/bin/env node' },
    splitting: false,
  },
] satisfies Options[]);
