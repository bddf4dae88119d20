import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { loadMLX } from '../../src/mlx/load.js';
import { loadPEFT } from '../../src/peft/load.js';
import { savePEFT } from '../../src/peft/save.js';
import { AdapterError } from '../../src/errors.js';
import { expectSameSpec } from './helpers.js';

const golden = readdirSync('test/fixtures/golden')
  .flatMap((c) => readdirSync(join('test/fixtures/golden', c)).filter((d) => d.startsWith('adapter')).map((d) => join('test/fixtures/golden', c, d)))
  .filter((d) => existsSync(join(d, 'adapter_model.safetensors')));
const real = readdirSync('test/fixtures/peft-real').map((d) => join('test/fixtures/peft-real', d)).filter((d) => existsSync(join(d, 'adapter_config.json')));

describe('savePEFT: load → save → load gives the same spec', () => {
  test.each([...golden, ...real])('%s', async (dir) => {
    const first = await loadPEFT(dir);
    const files = savePEFT(first);
    expect(Object.keys(files).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    const second = await loadPEFT(files);
    expectSameSpec(second, first);
    expect(second.name).toBe(first.name);
  });

  test('an MLX adapter saved as PEFT keeps its scale (α = s·r)', async () => {
    const mlx = await loadMLX('test/fixtures/golden/mlx-format/adapter');
    const peft = await loadPEFT(savePEFT(mlx));
    expect(peft.format).toBe('peft');
    expectSameSpec(peft, mlx, { config: false });
    expect(peft.config).toMatchObject({ r: 4, lora_alpha: 80, target_modules: ['q_proj', 'v_proj'] });
  });

  test('per-module ranks and scales that the config does not give are written as exact-path patterns', async () => {
    const spec = await loadPEFT('test/fixtures/golden/patterns/adapter');
    const m = spec.modules.map((x) => (x.path === 'model.layers.0.self_attn.v_proj' ? { ...x, alpha: 5, scale: 1.25 } : x));
    const changed = { ...spec, modules: m };
    const files = savePEFT(changed);
    const cfg = JSON.parse(new TextDecoder().decode(files['adapter_config.json']));
    expect(Object.keys(cfg.alpha_pattern)[0]).toBe('model.layers.0.self_attn.v_proj');
    expectSameSpec(await loadPEFT(files), changed, { config: false });
  });

  test('mixed DoRA and plain modules cannot share one PEFT config', async () => {
    const spec = await loadPEFT('test/fixtures/golden/dora/adapter');
    const mixed = { ...spec, modules: spec.modules.map((x, i) => (i === 0 ? { ...x, kind: 'linear' as const, magnitude: undefined } : x)) };
    expect(() => savePEFT(mixed)).toThrow(AdapterError);
  });
});
