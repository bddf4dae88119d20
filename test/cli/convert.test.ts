// `peftjs convert`: an adapter rewritten in the other format loads back and computes the golden y_on (float64).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { convertAdapter } from '../../src/cli/convert.js';
import { JsBackend } from '../../src/backends/js.js';
import { LoRAContainer } from '../../src/adapter/container.js';
import { modelFromWeights } from '../../src/nn/model-from-weights.js';
import { expectClose, GOLDEN, readSafetensors } from '../lora/helpers.js';

const ROOT = new URL('../../', import.meta.url).pathname;
let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'peftjs-convert-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Loads `dir` (either format), applies it to the case's base and checks every module's y_on. */
async function expectGolden(name: string, dir: string): Promise<void> {
  const model = modelFromWeights(readSafetensors(join(GOLDEN, name, 'base.safetensors')), { backend: new JsBackend() });
  const io = readSafetensors(join(GOLDEN, name, 'io.safetensors'));
  const applied = (await LoRAContainer.load(dir)).apply(model);
  expect(applied.length).toBeGreaterThan(0);
  for (const { path, layer } of applied) {
    const want = io.get(`${path}.y_on`)!;
    expectClose(layer.forward(io.get(`${path}.x`)!).toCpu().data, want.data as Float64Array, want.shape, 1e-4, path);
  }
}

test.each([
  ['basic', 'mlx'],
  ['rslora', 'mlx'],
  ['dtype-bf16', 'mlx'],
  ['dora', 'mlx'],
  ['mlx-format', 'peft'],
  ['basic', 'peft'],
])('%s → %s: the converted adapter gives y_on', async (name, to) => {
  const out = join(tmp, `${name}-${to}`);
  const r = await convertAdapter(join(GOLDEN, name, 'adapter'), to, out);
  expect(r.files.sort()).toEqual(to === 'mlx' ? ['adapter_config.json', 'adapters.safetensors'] : ['adapter_config.json', 'adapter_model.safetensors']);
  const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  expect(to === 'mlx' ? 'lora_parameters' in cfg : cfg.peft_type === 'LORA').toBe(true);
  await expectGolden(name, out);
});

test('what MLX cannot hold (several ranks, a lora_B bias): AdapterError listing why, and nothing written', async () => {
  for (const name of ['patterns', 'lora-bias']) {
    const out = join(tmp, `${name}-refused`);
    await expect(convertAdapter(join(GOLDEN, name, 'adapter'), 'mlx', out)).rejects.toMatchObject({ name: 'AdapterError', code: 'invalid_adapter' });
    expect(existsSync(out) && readdirSync(out).length).toBeFalsy();
  }
  await expect(convertAdapter(join(GOLDEN, 'basic/adapter'), 'gguf', join(tmp, 'x'))).rejects.toMatchObject({ name: 'ApplyError', code: 'bad_option', got: 'gguf' });
});

test('peftjs convert (the built CLI)', () => {
  const out = join(tmp, 'cli');
  const r = spawnSync(process.execPath, [`${ROOT}dist/cli.js`, 'convert', join(GOLDEN, 'basic/adapter'), '--to', 'mlx', '--out', out], { encoding: 'utf8', timeout: 60_000 });
  expect(r.stderr).toBe('');
  expect(r.stdout).toMatch(/^wrote a MLX adapter \(4 LoRA modules\)/);
  expect(readdirSync(out).sort()).toEqual(['adapter_config.json', 'adapters.safetensors']);
});
