import { describe, expect, test } from 'vitest';
import { AdapterError, ConfigError, PeftError } from '../../src/errors.js';
import { writeSafetensors } from '../../src/formats/safetensors.js';
import { loadPEFT } from '../../src/peft/load.js';
import { BASE_CONFIG, tensorRecord, type FakeTensor } from './helpers.js';

/** In-memory adapters crafted with writeSafetensors. */
function files(tensors: Record<string, FakeTensor>, config: object = BASE_CONFIG): Record<string, Uint8Array> {
  return {
    'adapter_config.json': new TextEncoder().encode(JSON.stringify(config)),
    'adapter_model.safetensors': writeSafetensors(tensorRecord(tensors)),
  };
}
async function fail(f: Record<string, Uint8Array>): Promise<PeftError> {
  try {
    await loadPEFT(f);
  } catch (e) {
    expect(e).toBeInstanceOf(PeftError);
    return e as PeftError;
  }
  throw new Error('expected an error');
}

const P = 'base_model.model.model.layers.0.self_attn';
const pair = (m: string, r = 4, inF = 6, out = 5): Record<string, FakeTensor> => ({
  [`${P}.${m}.lora_A.weight`]: { shape: [r, inF] },
  [`${P}.${m}.lora_B.weight`]: { shape: [out, r] },
});

describe('malformed adapters: errors name the tensor', () => {
  test('lora_A without lora_B', async () => {
    const e = await fail(files({ ...pair('q_proj'), [`${P}.v_proj.lora_A.weight`]: { shape: [4, 6] } }));
    expect(e).toBeInstanceOf(AdapterError);
    expect(e.code).toBe('unpaired_factor');
    expect(e.tensor).toBe(`${P}.v_proj.lora_A.weight`);
    expect(e.message).toMatchInlineSnapshot(`"lora_B missing for this module: expected lora_A and lora_B, got base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight → at adapter_model.safetensors › base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight"`);
  });
  test('lora_B without lora_A', async () => {
    const e = await fail(files({ [`${P}.q_proj.lora_B.weight`]: { shape: [5, 4] } }));
    expect(e.code).toBe('unpaired_factor');
    expect(e.tensor).toBe(`${P}.q_proj.lora_B.weight`);
  });
  test('a tensor that fits nothing', async () => {
    const e = await fail(files({ ...pair('q_proj'), [`${P}.q_proj.scaling_factor`]: { shape: [1] } }));
    expect(e.code).toBe('unknown_tensor');
    expect(e.message).toMatchInlineSnapshot(`"tensor fits nothing in a LoRA adapter: expected a LoRA factor (lora_A/lora_B/…), a modules_to_save weight, a base bias or trainable_tokens_delta, got base_model.model.model.layers.0.self_attn.q_proj.scaling_factor → at adapter_model.safetensors › base_model.model.model.layers.0.self_attn.q_proj.scaling_factor"`);
  });
  test('rank from tensors vs rank_pattern', async () => {
    const e = await fail(files({ ...pair('q_proj', 4), ...pair('v_proj', 4) }, { ...BASE_CONFIG, rank_pattern: { v_proj: 2 } }));
    expect(e.code).toBe('rank_mismatch');
    expect(e.message).toMatchInlineSnapshot(`"tensor rank does not match the config: expected 2, got 4 (config says rank_pattern["v_proj"] = 2) → at adapter_model.safetensors › base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight"`);
  });
  test('rank from tensors vs r', async () => {
    const e = await fail(files(pair('q_proj', 3)));
    expect(e.code).toBe('rank_mismatch');
    expect(e.expected).toBe(4);
    expect(e.got).toBe(3);
  });
  test('lora_A and lora_B disagree', async () => {
    const e = await fail(files({ [`${P}.q_proj.lora_A.weight`]: { shape: [4, 6] }, [`${P}.q_proj.lora_B.weight`]: { shape: [5, 3] } }));
    expect(e.code).toBe('rank_mismatch');
  });
  test('every issue is collected, then thrown once', async () => {
    const e = await fail(
      files({ ...pair('q_proj', 2), [`${P}.v_proj.lora_A.weight`]: { shape: [4, 6] }, [`${P}.k_proj.extra`]: { shape: [2] } }),
    );
    expect(e.issues.map((i) => i.code).sort()).toEqual(['rank_mismatch', 'unknown_tensor', 'unpaired_factor']);
    expect(e.message.split('\n')[0]).toBe('invalid LoRA adapter adapter_model.safetensors (3 issues)');
    expect(e.message.split('\n').slice(1).every((l) => l.startsWith('  ✖ '))).toBe(true);
  });
  test('3-D lora_B (PEFT 0.2 MergedLinear conv) is a ConfigError', async () => {
    const e = await fail(files({ [`${P}.q_proj.lora_A.weight`]: { shape: [8, 6] }, [`${P}.q_proj.lora_B.weight`]: { shape: [10, 4, 1] } }));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.code).toBe('unsupported_merged_linear');
    expect(e.message).toMatchInlineSnapshot(`"a 3-D lora_B (PEFT 0.2-era MergedLinear or Conv1d LoRA) is not supported: expected lora_B [out, r], got [10, 4, 1] → at adapter_model.safetensors › base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"`);
  });
  test('missing config / missing weights', async () => {
    const f = files(pair('q_proj'));
    expect((await fail({ 'adapter_model.safetensors': f['adapter_model.safetensors']! })).code).toBe('config_missing');
    expect((await fail({ 'adapter_config.json': f['adapter_config.json']! })).code).toBe('weights_missing');
    expect((await fail({ ...f, 'adapter_config.json': new TextEncoder().encode('{nope') })).code).toBe('config_not_json');
  });
  test('use_dora without a magnitude', async () => {
    const e = await fail(files(pair('q_proj'), { ...BASE_CONFIG, use_dora: true }));
    expect(e.code).toBe('unpaired_factor');
  });
  test('lora_B.bias of the wrong size', async () => {
    const e = await fail(files({ ...pair('q_proj'), [`${P}.q_proj.lora_B.bias`]: { shape: [4] } }));
    expect(e.code).toBe('shape_mismatch');
  });
  test('two adapter names in one file need adapterName', async () => {
    const f = files({
      [`${P}.q_proj.lora_A.default.weight`]: { shape: [4, 6] },
      [`${P}.q_proj.lora_B.default.weight`]: { shape: [5, 4] },
      [`${P}.q_proj.lora_A.other.weight`]: { shape: [4, 6] },
      [`${P}.q_proj.lora_B.other.weight`]: { shape: [5, 4] },
    });
    expect((await fail(f)).code).toBe('invalid_adapter');
    const spec = await loadPEFT(f, { adapterName: 'other' });
    expect(spec.name).toBe('other');
    expect(spec.modules).toHaveLength(1);
  });
});

describe('key forms that load', () => {
  test('twice-wrapped prefix loads with a warning', async () => {
    const spec = await loadPEFT(files({ [`base_model.model.${P}.q_proj.lora_A.weight`]: { shape: [4, 6] }, [`base_model.model.${P}.q_proj.lora_B.weight`]: { shape: [5, 4] } }, { ...BASE_CONFIG, target_modules: ['q_proj'] }));
    expect(spec.modules[0]!.path).toBe('model.layers.0.self_attn.q_proj');
    expect(spec.warnings).toEqual(['2 key(s) carry the prefix "base_model.model." twice (a PeftModel saved inside another): both were removed']);
  });
  test('adapter-name segments in embedding and DoRA keys; older lora_magnitude_vector.weight', async () => {
    const spec = await loadPEFT(
      files(
        {
          'base_model.model.model.embed_tokens.lora_embedding_A.default': { shape: [4, 10] },
          'base_model.model.model.embed_tokens.lora_embedding_B.default': { shape: [3, 4] },
          [`${P}.q_proj.lora_A.default.weight`]: { shape: [4, 6] },
          [`${P}.q_proj.lora_B.default.weight`]: { shape: [5, 4] },
          [`${P}.q_proj.lora_magnitude_vector.default.weight`]: { shape: [5] },
          [`${P}.v_proj.lora_A.weight`]: { shape: [4, 6] },
          [`${P}.v_proj.lora_B.weight`]: { shape: [5, 4] },
          [`${P}.v_proj.lora_magnitude_vector.weight`]: { shape: [5] },
        },
        { ...BASE_CONFIG, use_dora: true, target_modules: ['embed_tokens', 'q_proj', 'v_proj'] },
      ),
    );
    const kinds = Object.fromEntries(spec.modules.map((m) => [m.path, [m.kind, m.in, m.out, m.a.shape, m.b.shape]]));
    expect(kinds).toEqual({
      'model.embed_tokens': ['embedding', 10, 3, [10, 4], [4, 3]],
      'model.layers.0.self_attn.q_proj': ['dora', 6, 5, [6, 4], [4, 5]],
      'model.layers.0.self_attn.v_proj': ['dora', 6, 5, [6, 4], [4, 5]],
    });
  });
  test('modules_to_save in the newer `<module>.modules_to_save.default.weight` form', async () => {
    const spec = await loadPEFT(
      files(
        { ...pair('q_proj'), 'base_model.model.score.modules_to_save.default.weight': { shape: [2, 6] } },
        { ...BASE_CONFIG, modules_to_save: ['score'] },
      ),
    );
    expect(spec.replacements.map((r) => [r.path, r.kind, Object.keys(r.tensors)])).toEqual([['score', 'modules_to_save', ['weight']]]);
  });
  test('trainable tokens: delta rows with indices from trainable_token_indices', async () => {
    const spec = await loadPEFT(
      files(
        { ...pair('q_proj'), 'base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta': { shape: [3, 7] } },
        { ...BASE_CONFIG, trainable_token_indices: { embed_tokens: [5, 1, 9] } },
      ),
    );
    const r = spec.replacements[0]!;
    expect([r.path, r.kind]).toEqual(['model.embed_tokens', 'trainable_tokens']);
    expect([...(r.tensors.indices!.data as Int32Array)]).toEqual([5, 1, 9]);
    expect(r.tensors.delta!.shape).toEqual([3, 7]);
  });
  test('trainable tokens whose row count disagrees with the indices', async () => {
    const e = await fail(
      files(
        { ...pair('q_proj'), 'base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta': { shape: [2, 7] } },
        { ...BASE_CONFIG, trainable_token_indices: [5, 1, 9] },
      ),
    );
    expect(e.code).toBe('shape_mismatch');
  });
  test('bias = lora_only base bias under base_layer', async () => {
    const spec = await loadPEFT(files({ ...pair('q_proj'), [`${P}.q_proj.base_layer.bias`]: { shape: [5] } }, { ...BASE_CONFIG, target_modules: ['q_proj'], bias: 'lora_only' }));
    expect(spec.replacements.map((r) => [r.path, r.kind])).toEqual([['model.layers.0.self_attn.q_proj', 'bias']]);
    expect(spec.warnings).toEqual([]);
  });
  test('rsLoRA with rank_pattern and a float alpha_pattern: s = α/√r per module', async () => {
    const spec = await loadPEFT(
      files({ ...pair('q_proj', 4), ...pair('v_proj', 9) }, { ...BASE_CONFIG, use_rslora: true, lora_alpha: 6, rank_pattern: { v_proj: 9 }, alpha_pattern: { 'layers\\.0\\.self_attn\\.v_proj': 4.5 } }),
    );
    const s = Object.fromEntries(spec.modules.map((m) => [m.path.split('.').pop(), [m.rank, m.alpha, m.scale]]));
    expect(s).toEqual({ q_proj: [4, 6, 3], v_proj: [9, 4.5, 1.5] });
  });
  // PEFT wraps only targeted modules; other tensors are unexpected keys that load_state_dict(strict=False) drops
  // (tuners_utils.check_target_module_exists). See test/peft/semantics.test.ts for the full rule.
  test('a module outside target_modules is ignored with a warning', async () => {
    const spec = await loadPEFT(files({ ...pair('q_proj'), ...pair('v_proj'), ...pair('k_proj') }));
    expect(spec.modules.map((m) => m.path)).toEqual([`${P.slice('base_model.model.'.length)}.q_proj`, `${P.slice('base_model.model.'.length)}.v_proj`]);
    expect(spec.warnings).toEqual(['model.layers.0.self_attn.k_proj: LoRA tensors ignored, as PEFT ignores them: it does not match target_modules']);
  });
});
