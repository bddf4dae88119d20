// docs/api.md's walkthrough (the former README API sketch), step by step, on the golden `basic` case: it must keep working as written.
import { copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { init, LoRAContainer, loadModel, setLoRAEnabled, Tensor, type LoRALinear } from '../src/index.js';
import { GOLDEN, readSafetensors } from './lora/helpers.js';

test('docs/api.md walkthrough: loadModel → fromPEFT → apply → forward → off → scale → fuse → unload', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'peftjs-readme-'));
  copyFileSync(join(GOLDEN, 'basic/base.safetensors'), join(dir, 'model.safetensors'));
  const io = readSafetensors(join(GOLDEN, 'basic/io.safetensors'));
  const path = 'model.layers.0.self_attn.q_proj';
  const x = io.get(`${path}.x`)!;
  const yOn = io.get(`${path}.y_on`)!.data as Float64Array;
  const yOff = io.get(`${path}.y_off`)!.data as Float64Array;
  const close = (got: ArrayLike<number>, want: Float64Array) => {
    const tol = 1e-4 * Math.max(1, ...Array.from(want, Math.abs)); // case.json's tolerance
    for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThanOrEqual(tol);
  };

  await init();
  const model = await loadModel(dir);
  const adapter = await LoRAContainer.fromPEFT(join(GOLDEN, 'basic/adapter'));
  expect(adapter.report.toString()).toContain('4 LoRA modules');
  adapter.apply(model);

  const q = model.get(path) as unknown as LoRALinear;
  const y = q.forward(Tensor.from(new Float32Array(x.data as Float32Array), x.shape, 'f32'));
  close(y.toCpu().data, yOn);

  setLoRAEnabled(model, false);
  const off = q.forward(x).toCpu().data;
  close(off, yOff);
  expect(Buffer.compare(new Uint8Array(off.buffer), new Uint8Array(q.base.forward(x).toCpu().data.buffer))).toBe(0);
  setLoRAEnabled(model, true);

  // Live scale: y(k) = y_off + k·(y_on − y_off), exactly linear in the multiplier.
  adapter.scale = 0.5;
  close(q.forward(x).toCpu().data, yOff.map((v, i) => v + 0.5 * (yOn[i]! - v)));
  adapter.scale = 1;

  adapter.fuse({ keepOriginal: true });
  close(q.forward(x).toCpu().data, yOn);
  adapter.unload(model);
  expect(model.get(path)!.constructor.name).toBe('Linear');
  close(((model.get(path) as unknown as LoRALinear).forward(x)).toCpu().data, yOff);
});
