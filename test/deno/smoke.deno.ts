// Deno: the built package loads its wasm, computes one LoRA linear right, and loads a PEFT adapter from a directory
// (run by `npm test` via scripts/run-runtimes.mjs).
import * as lib from '../../dist/index.js';
import * as workerLib from '../../dist/worker.js';
import { runGoldenSmoke, runModelSmoke, runSmoke, runWorkerSmoke } from '../runtimes/smoke.mjs';

const CASE = new URL('../fixtures/golden/basic/', import.meta.url);

Deno.test('deno: wasm lora_linear matches the float64 reference; off equals base', async () => {
  const res = await runSmoke(lib);
  if (res.backend !== 'wasm') throw new Error(`expected the wasm backend, got ${res.backend}`);
  if (!res.ok) throw new Error(`smoke failed: ${JSON.stringify(res)}`);
});

Deno.test('deno: LoRAContainer.fromPEFT(directory) → apply → y_on of the golden basic case; off equals base', async () => {
  const res = await runGoldenSmoke(lib, {
    adapter: new URL('adapter', CASE).pathname,
    readBytes: (name: string) => Deno.readFile(new URL(name, CASE)),
  });
  if (!res.ok) throw new Error(`golden smoke failed: ${JSON.stringify(res)}`);
});

Deno.test('deno: CausalLM (pycoder + prose LoRA) generates the oracle text, adapter off and on', async () => {
  const root = new URL('../../', import.meta.url);
  const oracle = JSON.parse(await Deno.readTextFile(new URL('test/fixtures/models/pycoder/oracle.json', root)));
  const res = await runModelSmoke(lib, { model: new URL('models/pycoder/base', root).pathname, adapter: new URL('models/pycoder/adapter', root).pathname, oracle });
  if (!res.ok) throw new Error(`model smoke failed: ${JSON.stringify(res)}`);
});

Deno.test('deno: WorkerLM (peftjs/worker, a Web Worker) streams the same oracle text; errors cross back typed', async () => {
  const root = new URL('../../', import.meta.url);
  const oracle = JSON.parse(await Deno.readTextFile(new URL('test/fixtures/models/pycoder/oracle.json', root)));
  const res = await runWorkerSmoke(workerLib, lib, { model: new URL('models/pycoder/base', root).pathname, adapter: new URL('models/pycoder/adapter', root).pathname, oracle });
  if (!res.ok) throw new Error(`worker smoke failed: ${JSON.stringify(res)}`);
});
