import { readFileSync } from 'node:fs';
import { defineConfig, type Options } from 'tsup';

const pkg = JSON.parse(readFileSync('./package.json', 'utf8')) as { version: string };

// One neutral build serves Node, Deno, Bun and browsers: the wasm bytes are inlined (src/runtime/wasm-bytes.ts),
// zod is bundled so a browser can import dist/index.js with no bundler or import map, and `node:*` modules stay
// external, reached only through dynamic import() on the runtimes that have them.
export default defineConfig([
  {
    entry: { index: 'src/index.ts' },
    format: ['esm', 'cjs'],
    dts: true,
    shims: true,
    clean: true,
    platform: 'neutral',
    target: 'es2022',
    esbuildOptions(o) {
      o.mainFields = ['module', 'main'];
    },
    noExternal: ['zod'],
    external: [/^node:/, 'webgpu'],
    define: { __PEFTJS_VERSION__: JSON.stringify(pkg.version) },
    sourcemap: false,
    splitting: false,
  },
  {
    entry: { cli: 'src/cli/index.ts' },
    format: ['esm'],
    platform: 'node',
    target: 'node20',
    noExternal: ['zod'],
    external: ['webgpu'],
    define: { __PEFTJS_VERSION__: JSON.stringify(pkg.version) },
    banner: { js: '#!/usr/bin/env node' },
    splitting: false,
  },
] satisfies Options[]);
