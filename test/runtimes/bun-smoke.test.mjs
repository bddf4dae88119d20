// Bun: the built package loads its wasm, computes one LoRA linear right, and loads a PEFT adapter from a directory
// (run by `npm test` via scripts/run-runtimes.mjs).
import { expect, test } from 'bun:test';
import * as lib from '../../dist/index.js';
import * as workerLib from '../../dist/worker.js';
import { runGoldenSmoke, runModelSmoke, runSmoke, runWorkerSmoke } from './smoke.mjs';

const CASE = new URL('../fixtures/golden/basic/', import.meta.url);

test('bun: wasm lora_linear matches the float64 reference; off equals base', async () => {
  const res = await runSmoke(lib);
  expect(res.backend).toBe('wasm');
  expect(res.offEqualsBase).toBe(true);
  expect(res.maxErr).toBeLessThanOrEqual(res.tol);
});

test('bun: LoRAContainer.fromPEFT(directory) → apply → y_on of the golden basic case; off equals base', async () => {
  const res = await runGoldenSmoke(lib, {
    adapter: new URL('adapter', CASE).pathname,
    readBytes: async (name) => new Uint8Array(await Bun.file(new URL(name, CASE)).arrayBuffer()),
  });
  expect(res.modules).toBe(4);
  expect(res.scales).toEqual([2, 2, 2, 2]);
  expect(res.offEqualsBase).toBe(true);
  expect(res.maxErr).toBeLessThanOrEqual(res.tol);
});

test('bun: CausalLM (pycoder + prose LoRA) generates the oracle text, adapter off and on', async () => {
  const root = new URL('../../', import.meta.url);
  const oracle = JSON.parse(await Bun.file(new URL('test/fixtures/models/pycoder/oracle.json', root)).text());
  const res = await runModelSmoke(lib, { model: new URL('models/pycoder/base', root).pathname, adapter: new URL('models/pycoder/adapter', root).pathname, oracle });
  expect(res.texts.off).toBe(oracle.prompts[0].greedy_off_text);
  expect(res.texts.on).toBe(oracle.prompts[0].greedy_on_text);
});

test('bun: WorkerLM (peftjs/worker, a Web Worker) streams the same oracle text; errors cross back typed', async () => {
  const root = new URL('../../', import.meta.url);
  const oracle = JSON.parse(await Bun.file(new URL('test/fixtures/models/pycoder/oracle.json', root)).text());
  const res = await runWorkerSmoke(workerLib, lib, { model: new URL('models/pycoder/base', root).pathname, adapter: new URL('models/pycoder/adapter', root).pathname, oracle });
  expect(res.texts.off).toBe(oracle.prompts[0].greedy_off_text);
  expect(res.texts.on).toBe(oracle.prompts[0].greedy_on_text);
  expect(res.error).toBe('ModelError:bad_option');
});
