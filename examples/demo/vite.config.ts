import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

// The browser demo (`npm run demo:web`): the library straight from ../../src (no build step), the embedded
// pycoder served from ../../models as Vite's public dir (so /pycoder/base/config.json, with Range support;
// nothing is copied into the repository, a build copies it into its own outDir).
const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

// Cross-origin isolation: lets the page use SharedArrayBuffer (and precise timers) should the runtime want them.
const isolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

export default defineConfig({
  root: here('.'),
  base: './',
  // No SPA fallback: a missing optional file (model.safetensors.index.json) must be a 404, not index.html.
  appType: 'mpa',
  publicDir: here('../../models'),
  server: { host: '127.0.0.1', headers: isolation, fs: { allow: [here('../..')] } },
  preview: { host: '127.0.0.1', headers: isolation },
  build: { target: 'es2022', emptyOutDir: true, chunkSizeWarningLimit: 2048 },
});
