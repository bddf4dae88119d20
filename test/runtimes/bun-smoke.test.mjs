// Bun: the built package loads its wasm and computes one LoRA linear right (run by `npm test` via scripts/run-runtimes.mjs).
import { expect, test } from 'bun:test';
import * as lib from '../../dist/index.js';
import { runSmoke } from './smoke.mjs';

test('bun: wasm lora_linear matches the float64 reference; off equals base', async () => {
  const res = await runSmoke(lib);
  expect(res.backend).toBe('wasm');
  expect(res.offEqualsBase).toBe(true);
  expect(res.maxErr).toBeLessThanOrEqual(res.tol);
});
