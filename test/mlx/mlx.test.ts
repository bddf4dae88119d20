import { describe, expect, test } from 'vitest';
import { ConfigError, PeftError } from '../../src/errors.js';
import { writeSafetensors } from '../../src/formats/safetensors.js';
import { loadMLX } from '../../src/mlx/load.js';
import { saveMLX } from '../../src/mlx/save.js';
import { loadAdapter } from '../../src/adapter/detect.js';
import { loadPEFT } from '../../src/peft/load.js';
import { expectSameSpec, tensorRecord, type FakeTensor } from '../peft/helpers.js';

const CONFIG = { fine_tune_type: 'lora', num_layers: 4, lora_parameters: { rank: 4, scale: 10.0, dropout: 0.0, keys: ['self_attn.q_proj'] }, model: 'mlx-community/tiny', iters: 100 };

function files(tensors: Record<string, FakeTensor>, config: object = CONFIG): Record<string, Uint8Array> {
  return {
    'adapter_config.json': new TextEncoder().encode(JSON.stringify(config)),
    'adapters.safetensors': writeSafetensors(tensorRecord(tensors)),
  };
}
async function fail(f: Record<string, Uint8Array>): Promise<PeftError> {
  try {
    await loadMLX(f);
  } catch (e) {
    return e as PeftError;
  }
  throw new Error('expected an error');
}

describe('MLX adapters', () => {
  test('relative keys, scale as given, alpha = scale·rank, spec.mlx recorded', async () => {
    const spec = await loadMLX(files({ 'self_attn.q_proj.lora_a': { shape: [6, 4] }, 'self_attn.q_proj.lora_b': { shape: [4, 5] } }));
    expect(spec.format).toBe('mlx');
    expect(spec.mlx).toEqual({ numLayers: 4, keys: ['self_attn.q_proj'] });
    const m = spec.modules[0]!;
    expect([m.path, m.kind, m.rank, m.scale, m.alpha, m.in, m.out, m.a.shape, m.b.shape]).toEqual(['self_attn.q_proj', 'linear', 4, 10, 40, 6, 5, [6, 4], [4, 5]]);
    expect(spec.config.model).toBe('mlx-community/tiny');
  });
  test('DoRA: `.m` is the magnitude', async () => {
    const spec = await loadMLX(
      files({ 'model.layers.0.mlp.up_proj.lora_a': { shape: [6, 4] }, 'model.layers.0.mlp.up_proj.lora_b': { shape: [4, 5] }, 'model.layers.0.mlp.up_proj.m': { shape: [5] } }, { ...CONFIG, fine_tune_type: 'dora' }),
    );
    expect(spec.modules[0]!.kind).toBe('dora');
    expect(spec.modules[0]!.magnitude!.shape).toEqual([5]);
  });
  test('older configs: lora_layers and use_dora', async () => {
    const spec = await loadMLX(
      files({ 'a.lora_a': { shape: [6, 4] }, 'a.lora_b': { shape: [4, 5] }, 'a.m': { shape: [5] } }, { lora_layers: 8, use_dora: true, lora_parameters: { rank: 4, scale: 2 } }),
    );
    expect(spec.mlx!.numLayers).toBe(8);
    expect(spec.modules[0]!.kind).toBe('dora');
  });
  test('fine_tune_type full is rejected', async () => {
    const e = await fail(files({ 'a.weight': { shape: [2, 2] } }, { ...CONFIG, fine_tune_type: 'full' }));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.code).toBe('unsupported_fine_tune');
    expect(e.message).toMatchInlineSnapshot(`"a full fine-tune holds whole weights, not an adapter: expected lora or dora, got full → at adapter_config.json › fine_tune_type"`);
  });
  test('unknown tensor, unpaired factor and rank mismatch, all at once', async () => {
    const e = await fail(
      files({ 'x.lora_a': { shape: [6, 4] }, 'y.lora_a': { shape: [6, 2] }, 'y.lora_b': { shape: [2, 5] }, 'z.scales': { shape: [3] } }),
    );
    expect(e.issues.map((i) => i.code).sort()).toEqual(['rank_mismatch', 'unknown_tensor', 'unpaired_factor']);
    expect(e.issues.find((i) => i.code === 'unpaired_factor')!.tensor).toBe('x.lora_a');
  });
  test('save → load round trip (golden mlx-format)', async () => {
    const first = await loadMLX('test/fixtures/golden/mlx-format/adapter');
    const files = saveMLX(first);
    expect(Object.keys(files).sort()).toEqual(['adapter_config.json', 'adapters.safetensors']);
    const second = await loadMLX(files);
    expectSameSpec(second, first);
    expect(second.mlx).toEqual(first.mlx);
  });
  test('a PEFT adapter saved as MLX: block-relative keys, one rank and scale', async () => {
    const peft = await loadPEFT('test/fixtures/golden/basic/adapter');
    const files = saveMLX(peft);
    const cfg = JSON.parse(new TextDecoder().decode(files['adapter_config.json']));
    expect(cfg).toEqual({ fine_tune_type: 'lora', num_layers: -1, lora_parameters: { rank: 4, scale: 2, dropout: 0, keys: ['self_attn.q_proj', 'self_attn.v_proj'] } });
    expectSameSpec(await loadMLX(files), peft, { config: false });
  });
  test('several ranks cannot be written as MLX', async () => {
    const peft = await loadPEFT('test/fixtures/golden/patterns/adapter');
    expect(() => saveMLX(peft)).toThrow(/one rank for every module/);
  });
  test('loadAdapter tells the formats apart', async () => {
    expect((await loadAdapter('test/fixtures/golden/mlx-format/adapter')).format).toBe('mlx');
    expect((await loadAdapter('test/fixtures/golden/basic/adapter')).format).toBe('peft');
    const e = await loadAdapter({ 'adapter_config.json': new TextEncoder().encode('{"hello": 1}') }).catch((x) => x);
    expect(e.code).toBe('unknown_format');
  });
});
