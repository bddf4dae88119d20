// The peftjs/worker app webpack 5 and Vite build (test/browser/bundlers.test.ts): WorkerLM starts the shipped worker
// script, which the bundler found through `new Worker(new URL(…, import.meta.url))` and bundled; pycoder with its
// prose LoRA, fetched over HTTP in the worker, must write the oracle's text.
import * as peftjs from 'peftjs';
import { ModelError, WorkerLM } from 'peftjs/worker';

(async () => {
  const lm = await WorkerLM.load('/models/pycoder/base/', { weightDtype: 'bf16', adapters: [{ name: 'prose', source: '/models/pycoder/adapter/' }] });
  const { text } = await lm.generate('def ', { maxNewTokens: 64 });
  const e = await lm.generate('def ', { temperature: -1 }).catch((err) => err);
  await lm.terminate();
  return { text, error: `${e.name}:${e.code}`, sameClass: e instanceof ModelError && e instanceof peftjs.ModelError };
})().then(
  (r) => {
    window.__result = r;
  },
  (e) => {
    window.__result = { error: String((e && e.stack) || e) };
  },
);
