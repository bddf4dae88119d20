// Deno: the built package loads its wasm and computes one LoRA linear right (run by `npm test` via scripts/run-runtimes.mjs).
import * as lib from '../../dist/index.js';
import { runSmoke } from '../runtimes/smoke.mjs';

Deno.test('deno: wasm lora_linear matches the float64 reference; off equals base', async () => {
  const res = await runSmoke(lib);
  if (res.backend !== 'wasm') throw new Error(`expected the wasm backend, got ${res.backend}`);
  if (!res.ok) throw new Error(`smoke failed: ${JSON.stringify(res)}`);
});
