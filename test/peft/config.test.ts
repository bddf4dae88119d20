import { describe, expect, test } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { parsePeftConfig } from '../../src/peft/config.js';
import { readFileSync } from 'node:fs';

const base = { peft_type: 'LORA', r: 8, lora_alpha: 16, target_modules: ['q_proj', 'v_proj'] };

function fail(raw: unknown): ConfigError {
  try {
    parsePeftConfig(raw);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('adapter_config.json rejections (one each, message pinned)', () => {
  test('peft_type IA3', () => {
    const e = fail({ ...base, peft_type: 'IA3' });
    expect(e.code).toBe('unsupported_peft_type');
    expect(e.message).toMatchInlineSnapshot(`"only LoRA adapters are supported: expected LORA, got IA3 → at adapter_config.json › peft_type"`);
  });
  test('peft_type PROMPT_TUNING', () => {
    const e = fail({ peft_type: 'PROMPT_TUNING', num_virtual_tokens: 20 });
    expect(e.code).toBe('unsupported_peft_type');
    expect(e.message).toMatchInlineSnapshot(`"only LoRA adapters are supported: expected LORA, got PROMPT_TUNING → at adapter_config.json › peft_type"`);
  });
  test.each(['pissa', 'pissa_niter_16', 'olora', 'corda', 'loftq'])('init_lora_weights = %s rewrites the base', (init) => {
    const e = fail({ ...base, init_lora_weights: init });
    expect(e.code).toBe('unsupported_init');
    expect(e.got).toBe(init);
  });
  test('init_lora_weights = pissa (message)', () => {
    expect(fail({ ...base, init_lora_weights: 'pissa' }).message).toMatchInlineSnapshot(`"this initialisation rewrites the base weights, so the adapter cannot be applied unmerged to the original model: expected true, false, "gaussian", "eva" or "orthogonal" (convert PiSSA/OLoRA/CorDA/LoftQ adapters with path_initial_model_for_weight_conversion), got pissa → at adapter_config.json › init_lora_weights"`);
  });
  test('layer_replication', () => {
    const e = fail({ ...base, layer_replication: [[0, 4], [2, 6]] });
    expect(e.code).toBe('unsupported_layer_replication');
    expect(e.message).toMatchInlineSnapshot(`"layer_replication duplicates base layers, which is not supported: expected null, got [[0,4],[2,6]] → at adapter_config.json › layer_replication"`);
  });
  test('PEFT 0.2 MergedLinear: enable_lora list', () => {
    const e = fail({ ...base, enable_lora: [true, false, true], target_modules: ['c_attn'] });
    expect(e.code).toBe('unsupported_merged_linear');
    expect(e.message).toMatchInlineSnapshot(`"PEFT 0.2-era MergedLinear (enable_lora) is not supported: expected null, got [true,false,true] → at adapter_config.json › enable_lora"`);
  });
  test('r = 0', () => {
    const e = fail({ ...base, r: 0 });
    expect(e.code).toBe('bad_rank');
    expect(e.message).toMatchInlineSnapshot(`"LoRA rank must be positive: expected r ≥ 1, got 0 → at adapter_config.json › r"`);
  });
  test('negative rank in rank_pattern', () => {
    const e = fail({ ...base, rank_pattern: { q_proj: -2 } });
    expect(e.code).toBe('bad_rank');
    expect(e.message).toMatchInlineSnapshot(`"LoRA rank must be positive: expected r ≥ 1, got -2 → at adapter_config.json › rank_pattern.q_proj"`);
  });
  test('target_parameters', () => {
    const e = fail({ ...base, target_parameters: ['experts.gate_up_proj'] });
    expect(e.code).toBe('unsupported_feature');
    expect(e.message).toMatchInlineSnapshot(`"LoRA on nn.Parameter (target_parameters) is not supported: expected null, got ["experts.gate_up_proj"] → at adapter_config.json › target_parameters"`);
  });
  test('schema violations are all collected into one error', () => {
    const e = fail({ peft_type: 'LORA', r: 'eight', bias: 'some', lora_alpha: '16' });
    expect(e.code).toBe('config_invalid');
    expect(e.issues.map((i) => i.key)).toEqual(['r', 'lora_alpha', 'bias']);
    expect(e.message).toMatchInlineSnapshot(`
      "invalid adapter_config.json (3 issues)
        ✖ Invalid input: expected number, received string: got eight → at adapter_config.json › r
        ✖ Invalid input: expected number, received string: got 16 → at adapter_config.json › lora_alpha
        ✖ Invalid option: expected one of "none"|"all"|"lora_only": got some → at adapter_config.json › bias"
    `);
  });
  test('several rejections at once', () => {
    const e = fail({ ...base, r: 0, layer_replication: [[0, 2]], init_lora_weights: 'olora' });
    expect(e.issues.map((i) => i.code)).toEqual(['bad_rank', 'unsupported_init', 'unsupported_layer_replication']);
  });
  test('not an object', () => {
    expect(fail([1, 2]).message).toMatchInlineSnapshot(`"adapter config must be a JSON object: expected object, got array → at adapter_config.json"`);
  });
});

describe('adapter_config.json defaults and leniency', () => {
  test('missing booleans mean false; peft defaults elsewhere', () => {
    const { config, warnings } = parsePeftConfig({ peft_type: 'LORA', r: 4 });
    expect(warnings).toEqual([]);
    expect(config).toMatchObject({
      r: 4,
      lora_alpha: 8,
      use_rslora: false,
      use_dora: false,
      fan_in_fan_out: false,
      lora_bias: false,
      inference_mode: false,
      bias: 'none',
      target_modules: null,
      exclude_modules: null,
      modules_to_save: null,
      rank_pattern: {},
      alpha_pattern: {},
      layers_to_transform: null,
      init_lora_weights: true,
    });
    // Legacy / rare switches are not added when absent, so a re-saved config does not grow them.
    expect(Object.keys(config)).not.toContain('enable_lora');
  });
  test('null booleans mean false too', () => {
    expect(parsePeftConfig({ peft_type: 'LORA', r: 4, use_dora: null, use_rslora: null }).config).toMatchObject({ use_dora: false, use_rslora: false });
  });
  test('float lora_alpha is kept as is', () => {
    expect(parsePeftConfig({ ...base, lora_alpha: 12.5 }).config.lora_alpha).toBe(12.5);
  });
  test('target_modules as a list, a regex string, or "all-linear"', () => {
    expect(parsePeftConfig({ ...base, target_modules: '.*\\.(q|v)_proj' }).config.target_modules).toBe('.*\\.(q|v)_proj');
    expect(parsePeftConfig({ ...base, target_modules: 'all-linear' }).config.target_modules).toBe('all-linear');
  });
  test('unknown keys are kept and reported as warnings', () => {
    const { config, warnings } = parsePeftConfig({ ...base, my_extension: { a: 1 }, another: 3 });
    expect(config.my_extension).toEqual({ a: 1 });
    expect(config.another).toBe(3);
    expect(warnings).toMatchInlineSnapshot(`
      [
        "unknown key in adapter_config.json kept as is: my_extension",
        "unknown key in adapter_config.json kept as is: another",
      ]
    `);
  });
  test('benign init values load: gaussian, eva, orthogonal, false', () => {
    for (const init of ['gaussian', 'eva', 'orthogonal', false]) expect(parsePeftConfig({ ...base, init_lora_weights: init }).config.init_lora_weights).toBe(init);
  });
  test('the real PEFT 0.2 t5 config (enable_lora: null, merge_weights) loads without warnings', () => {
    const raw = JSON.parse(readFileSync('test/fixtures/peft-real/t5-small-peft02-bin/adapter_config.json', 'utf8'));
    expect(raw.enable_lora).toBeNull();
    const { config, warnings } = parsePeftConfig(raw);
    expect(warnings).toEqual([]);
    expect(config.enable_lora).toBeNull();
    expect(config.r).toBe(16);
  });
});
