// The tiny app each bundler builds (test/browser/bundlers.test.ts): `import … from 'peftjs'` as a user writes it,
// resolved from the packed tarball in node_modules; it loads the golden `basic` adapter over HTTP, applies it and
// runs a forward, checked against float64 references in test/runtimes/smoke.mjs (copied beside this file).
import * as peftjs from 'peftjs';
import { runGoldenSmoke, runSmoke } from './smoke.mjs';

const CASE = new URL('/test/fixtures/golden/basic/', location.href);

(async () => {
  const kernel = await runSmoke(peftjs);
  const golden = await runGoldenSmoke(peftjs, {
    adapter: new URL('adapter/', CASE).href,
    readBytes: async (name) => new Uint8Array(await (await fetch(new URL(name, CASE))).arrayBuffer()),
  });
  // A local path has no meaning in a page: the browser build says so with a typed error instead of importing node:fs.
  const local = await peftjs.LoRAContainer.fromPEFT('./adapter').then(
    () => 'loaded',
    (e) => `${e.name}:${e.code}`,
  );
  return { kernel, golden, local };
})().then(
  (r) => {
    window.__result = r;
  },
  (e) => {
    window.__result = { error: String((e && e.stack) || e) };
  },
);
