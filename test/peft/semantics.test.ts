import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, test } from 'vitest';
import { AdapterError, ConfigError, PeftError } from '../../src/errors.js';
import { writeSafetensors } from '../../src/formats/safetensors.js';
import { parsePeftConfig } from '../../src/peft/config.js';
import { loadPEFT, missingAdapterKeys, missingKeysWarning } from '../../src/peft/load.js';
import { PATTERN_LIMITS, PeftMatcher, rankFor } from '../../src/peft/scaling.js';
import { expectSameSpec, tensorRecord, type FakeTensor } from './helpers.js';

/**
 * PEFT's loading semantics, each case taken from PEFT's own tests or code (cited per test):
 * huggingface/peft tests/test_tuners_utils.py, tests/test_layers_to_transform_moe.py (PR #3318, issue #3016),
 * src/peft/tuners/tuners_utils.py `check_target_module_exists`, src/peft/tuners/lora/config.py
 * `LoraConfig.__post_init__`, src/peft/config.py `PeftConfigMixin.__post_init__`, src/peft/utils/other.py
 * `get_pattern_key`, src/peft/peft_model.py (`PeftModelFor{SequenceClassification,TokenClassification,QuestionAnswering}`).
 */

type Cfg = ConstructorParameters<typeof PeftMatcher>[0];
const cfg = (c: Partial<Cfg>): Cfg => ({ target_modules: null, exclude_modules: null, layers_to_transform: null, layers_pattern: null, modules_to_save: null, ...c });
const targeted = (c: Partial<Cfg>, key: string) => new PeftMatcher(cfg(c)).targets(key) === true;

function files(tensors: Record<string, FakeTensor>, config: object): Record<string, Uint8Array> {
  return {
    'adapter_config.json': new TextEncoder().encode(JSON.stringify(config)),
    'adapter_model.safetensors': writeSafetensors(tensorRecord(tensors)),
  };
}
const pair = (path: string, r = 4, inF = 6, out = 5): Record<string, FakeTensor> => ({
  [`base_model.model.${path}.lora_A.weight`]: { shape: [r, inF] },
  [`base_model.model.${path}.lora_B.weight`]: { shape: [out, r] },
});
async function fail(f: Record<string, Uint8Array>): Promise<PeftError> {
  try {
    await loadPEFT(f);
  } catch (e) {
    expect(e).toBeInstanceOf(PeftError);
    return e as PeftError;
  }
  throw new Error('expected an error');
}
function configFail(raw: object): ConfigError {
  try {
    parsePeftConfig(raw);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('check_target_module_exists (PEFT tests/test_tuners_utils.py REGEX_TEST_CASES, verbatim)', () => {
  // (key, target_modules, layers_to_transform, layers_pattern, expected)
  const CASES: [string, string | string[], number[] | null, string | string[] | null, boolean][] = [
    ['', [], null, null, false],
    ['', ['foo'], null, null, false],
    ['foo', [], null, null, false],
    ['foo', ['foo'], null, null, true],
    ['foo', ['bar'], null, null, false],
    ['foo', ['foo', 'bar'], null, null, true],
    ['foo', 'foo', null, null, true],
    ['foo', '.*oo', null, null, true],
    ['foo', 'fo.*', null, null, true],
    ['foo', '.*bar.*', null, null, false],
    ['foobar', '.*oba.*', null, null, true],
    ['foo.bar.1.baz', ['baz'], [1], ['bar'], true],
    ['foo.bar.1.baz', ['baz'], [0], ['bar'], false],
    ['foo.bar.1.baz', ['baz'], [2], ['bar'], false],
    ['foo.bar.10.baz', ['baz'], [0], ['bar'], false],
    ['foo.bar.10.baz', ['baz'], [1], ['bar'], false],
    ['foo.bar.1.baz', ['baz'], [0, 1, 2], ['bar'], true],
    ['foo.bar.1.baz', ['baz', 'spam'], [1], ['bar'], true],
    ['foo.bar.1.baz', ['baz', 'spam'], [0, 1, 2], ['bar'], true],
    ['foo.whatever.1.baz', ['baz'], [1], [], true],
    ['foo.whatever.1.baz', ['baz'], [0], [], false],
    ['foo.whatever.1.baz', ['baz'], [1], '', true],
    ['foo.whatever.1.baz', ['baz'], [0], '', false],
    ['foo.whatever.1.baz', ['baz'], [1], null, true],
    ['foo.whatever.1.baz', ['baz'], [0], null, false],
    ['transformer.h.1.attn.attention.q_proj.foo', ['q_proj'], null, [], false],
    ['transformer.h.1.attn.attention.q_proj', [], null, [], false],
    ['transformer.h.1.attn.attention.q_proj', ['q_proj'], null, [], true],
    ['transformer.h.1.attn.attention.q_proj', ['q_proj', 'v_proj'], null, [], true],
    ['transformer.h.1.attn.attention.resid_dropout', ['q_proj', 'v_proj'], null, [], false],
    ['transformer.h.1.attn.attention.q_proj', ['q_proj'], [1], ['h'], true],
    ['transformer.h.1.attn.attention.q_proj', ['q_proj'], [0], ['h'], false],
    ['transformer.h.1.attn.attention.q_proj', ['q_proj'], [2], ['h'], false],
    ['transformer.h.1.attn.attention.q_proj', ['q_proj'], [0, 1, 2], ['h'], true],
    ['transformer.h.1.attn.attention.q_proj', ['q_proj', 'v_proj'], [0, 1, 2], ['h'], true],
    ['foo.bar.q_proj', ['q_proj'], null, [], true],
    ['foo.bar.1.baz', ['baz'], [1], ['foo'], false],
    ['foo.bar.1.baz', ['baz'], [1], ['baz'], false],
    ['bar.1.baz', ['baz'], [1], ['bar'], false],
    ['foo.bar.001.baz', ['baz'], [1], ['bar'], true],
    ['foo.bar.1.spam.2.baz', ['baz'], [1], ['bar'], true],
    ['foo.bar.2.spam.1.baz', ['baz'], [1], ['bar'], false],
    ['blocks.1.weight', ['weight'], [1], ['blocks'], false],
    ['blocks.1.bias', ['weight'], [1], ['blocks'], false],
    ['mlp.blocks.1.weight', ['weight'], [1], ['blocks'], true],
    ['mlp.blocks.1.bias', ['weight'], [1], ['blocks'], false],
  ];
  test.each(CASES)('%j with %j, layers %j, pattern %j → %j', (key, target_modules, layers_to_transform, layers_pattern, want) => {
    expect(targeted({ target_modules, layers_to_transform, layers_pattern }, key)).toBe(want);
  });
});

describe('layers_to_transform on MoE paths: the layer index, not the expert index (PEFT issue #3016, PR #3318)', () => {
  // tests/test_layers_to_transform_moe.py: ToyMoEModel with model.layers[0..3], each self_attn.q_proj and
  // mlp.experts[0..1].up_proj; layers_to_transform=[1] must target exactly layer 1's three modules.
  const paths = [0, 1, 2, 3].flatMap((l) => [`model.layers.${l}.self_attn.q_proj`, `model.layers.${l}.mlp.experts.0.up_proj`, `model.layers.${l}.mlp.experts.1.up_proj`]);
  test.each([[null], ['layers'], [['h', 'layers']]] as const)('layers_pattern %j', (layers_pattern) => {
    const m = new PeftMatcher(cfg({ target_modules: ['q_proj', 'up_proj'], layers_to_transform: [1], layers_pattern: layers_pattern as string | string[] | null }));
    expect(paths.filter((p) => m.targets(p) === true)).toEqual(['model.layers.1.self_attn.q_proj', 'model.layers.1.mlp.experts.0.up_proj', 'model.layers.1.mlp.experts.1.up_proj']);
  });

  test('loader: layer 1 expert 0 loads, layer 2 expert 1 is ignored with a warning', async () => {
    const spec = await loadPEFT(
      files({ ...pair('model.layers.1.mlp.experts.0.up_proj'), ...pair('model.layers.2.mlp.experts.1.up_proj') }, { peft_type: 'LORA', r: 4, target_modules: ['up_proj'], layers_to_transform: [1] }),
    );
    expect(spec.modules.map((m) => m.path)).toEqual(['model.layers.1.mlp.experts.0.up_proj']);
    expect(spec.warnings).toEqual(['model.layers.2.mlp.experts.1.up_proj: LoRA tensors ignored, as PEFT ignores them: its layer index is not in layers_to_transform']);
  });
});

describe('exclude_modules and modules_to_save guard targeting (check_target_module_exists)', () => {
  test('exclude_modules: a list matches by name or dotted suffix, a string must fullmatch', () => {
    const base = { target_modules: ['q_proj', 'v_proj'] };
    expect(targeted({ ...base, exclude_modules: ['layers.0.q_proj'] }, 'model.layers.0.q_proj')).toBe(false);
    expect(targeted({ ...base, exclude_modules: ['layers.0.q_proj'] }, 'model.layers.10.q_proj')).toBe(true);
    expect(targeted({ ...base, exclude_modules: ['q_proj'] }, 'model.layers.0.v_proj')).toBe(true);
    expect(targeted({ ...base, exclude_modules: '.*layers\\.0\\..*' }, 'model.layers.0.q_proj')).toBe(false);
    expect(targeted({ ...base, exclude_modules: 'layers\\.0\\..*' }, 'model.layers.0.q_proj')).toBe(true); // not a fullmatch
    expect(targeted({ target_modules: '.*_proj', exclude_modules: ['v_proj'] }, 'a.v_proj')).toBe(false);
  });
  test('modules_to_save: re.match(rf"(^|.*\\.){m}($|\\..*)", key) — the module, its children, not pre_classifier', () => {
    const c = { target_modules: ['classifier', 'dense', 'out_proj', 'pre_classifier'], modules_to_save: ['classifier'] };
    expect(targeted(c, 'classifier')).toBe(false);
    expect(targeted(c, 'roberta.classifier')).toBe(false);
    expect(targeted(c, 'classifier.dense')).toBe(false);
    expect(targeted(c, 'roberta.classifier.out_proj')).toBe(false);
    expect(targeted(c, 'pre_classifier')).toBe(true);
  });
  test('loader: LoRA tensors of excluded and modules_to_save modules are ignored, each named in a warning', async () => {
    const spec = await loadPEFT(
      files(
        { ...pair('model.layers.0.q_proj'), ...pair('model.layers.1.q_proj'), ...pair('lm_head'), 'base_model.model.lm_head.weight': { shape: [5, 6] } },
        { peft_type: 'LORA', r: 4, target_modules: ['q_proj', 'lm_head'], exclude_modules: ['layers.1.q_proj'], modules_to_save: ['lm_head'] },
      ),
    );
    expect(spec.modules.map((m) => m.path)).toEqual(['model.layers.0.q_proj']);
    expect(spec.replacements.map((r) => [r.path, r.kind])).toEqual([['lm_head', 'modules_to_save']]);
    expect(spec.warnings).toEqual([
      'lm_head: LoRA tensors ignored, as PEFT ignores them: it is a modules_to_save module',
      'model.layers.1.q_proj: LoRA tensors ignored, as PEFT ignores them: it matches exclude_modules',
    ]);
  });
  test('ignored tensors are not validated (PEFT never reads them): a malformed pair outside the targets loads', async () => {
    const spec = await loadPEFT(files({ ...pair('a.q_proj'), 'base_model.model.a.k_proj.lora_A.weight': { shape: [3, 2] } }, { peft_type: 'LORA', r: 4, target_modules: ['q_proj'] }));
    expect(spec.modules.map((m) => m.path)).toEqual(['a.q_proj']);
  });
  test('"all-linear" and a missing target_modules depend on the model: kept', async () => {
    for (const target_modules of ['all-linear', 'ALL-LINEAR', null]) {
      const spec = await loadPEFT(files(pair('a.anything'), { peft_type: 'LORA', r: 4, target_modules }));
      expect(spec.modules.map((m) => m.path)).toEqual(['a.anything']);
    }
  });
});

describe('task heads: PEFT adds them to modules_to_save itself (peft_model.py)', () => {
  const DIR = 'test/fixtures/peft-real/distilbert-imdb';
  test('real SEQ_CLS adapter saved with `modules_to_save: null` loads as with the list PEFT writes today', async () => {
    // Tashu014/lora-imdb-distilbert as published has modules_to_save ["classifier", "score"] (what
    // PeftModelForSequenceClassification writes back); older PEFT saved null and relied on task_type.
    const raw = JSON.parse(readFileSync(`${DIR}/adapter_config.json`, 'utf8'));
    const weights = new Uint8Array(readFileSync(`${DIR}/adapter_model.safetensors`));
    const legacy = await loadPEFT({ 'adapter_config.json': new TextEncoder().encode(JSON.stringify({ ...raw, modules_to_save: null })), 'adapter_model.safetensors': weights });
    const current = await loadPEFT(DIR);
    expectSameSpec(legacy, current, { config: false });
    expect(legacy.replacements.map((r) => r.path).sort()).toEqual(['classifier', 'pre_classifier']);
    expect(legacy.config.modules_to_save).toBeNull(); // the config is reported as written
  });
  test.each([
    ['SEQ_CLS', 'score'],
    ['SEQ_CLS', 'classifier'],
    ['TOKEN_CLS', 'classifier'],
    ['TOKEN_CLS', 'score'],
    ['QUESTION_ANS', 'qa_outputs'],
  ])('%s: base_model.model.%s.weight with modules_to_save null is a replacement of that head', async (task_type, head) => {
    const spec = await loadPEFT(
      files({ ...pair('model.layers.0.self_attn.q_proj'), [`base_model.model.${head}.weight`]: { shape: [2, 6] } }, { peft_type: 'LORA', task_type, r: 4, target_modules: ['q_proj'], modules_to_save: null }),
    );
    expect(spec.replacements.map((r) => [r.path, r.kind, r.tensors.weight!.shape])).toEqual([[head, 'modules_to_save', [2, 6]]]);
    expect(spec.warnings).toEqual([]);
  });
  test('without the task type the same tensor fits nothing', async () => {
    const e = await fail(files({ ...pair('model.layers.0.self_attn.q_proj'), 'base_model.model.score.weight': { shape: [2, 6] } }, { peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, target_modules: ['q_proj'] }));
    expect([e.code, e.tensor]).toEqual(['unknown_tensor', 'base_model.model.score.weight']);
  });
  test('SEQ_CLS heads are kept out of LoRA targeting; TOKEN_CLS/QUESTION_ANS add theirs only after injection', () => {
    // PeftModelForSequenceClassification extends modules_to_save before BaseTuner.__init__ (so the guard in
    // check_target_module_exists sees it); the token-classification and QA classes extend it afterwards.
    expect(targeted({ task_type: 'SEQ_CLS', target_modules: ['q_proj', 'score'] }, 'score')).toBe(false);
    expect(targeted({ task_type: 'TOKEN_CLS', target_modules: ['q_proj', 'score'] }, 'score')).toBe(true);
    expect(targeted({ task_type: 'QUESTION_ANS', target_modules: ['qa_outputs'] }, 'qa_outputs')).toBe(true);
  });
});

describe('rank_pattern / alpha_pattern: get_pattern_key', () => {
  test('first key in dict order whose (.*\\.)?(K)$ matches; "^foo" pins the top-level name (PEFT PR #2419)', () => {
    const rp = { foo: 2, 'bar.foo': 3 };
    expect(rankFor({ r: 8, rank_pattern: rp }, 'model.bar.foo')).toBe(2);
    expect(rankFor({ r: 8, rank_pattern: { 'bar.foo': 3, foo: 2 } }, 'model.bar.foo')).toBe(3);
    expect(rankFor({ r: 8, rank_pattern: { '^foo': 5 } }, 'foo')).toBe(5);
    expect(rankFor({ r: 8, rank_pattern: { '^foo': 5 } }, 'model.foo')).toBe(8);
    expect(rankFor({ r: 8, rank_pattern: { oo: 5 } }, 'model.foo')).toBe(8); // a whole dotted suffix only
  });
  test('"." in a plain key is a regex dot, as in Python: layers.0.q_proj also names layers_0_q_proj', () => {
    expect(rankFor({ r: 8, rank_pattern: { 'layers.0.q_proj': 2 } }, 'model.layers_0_q_proj')).toBe(2);
    expect(rankFor({ r: 8, rank_pattern: { 'x.layers.0.q_proj': 1, 'layers.0.q_proj': 2 } }, 'model.layers.0.q_proj')).toBe(2);
  });
  test('10,000 plain keys × 1,500 modules: hash lookups, zero regex steps (issue 8 item 10)', () => {
    const rank_pattern: Record<string, number> = {};
    for (let l = 0; l < 10_000; l++) rank_pattern[`model.layers.${l}.self_attn.q_proj`] = 1 + (l % 7);
    const m = new PeftMatcher({ ...cfg({ target_modules: ['q_proj'] }), rank_pattern });
    for (let l = 0; l < 1_500; l++) expect(m.rankKey(`model.layers.${l}.self_attn.q_proj`)).toBe(`model.layers.${l}.self_attn.q_proj`);
    expect(m.rankKey('model.layers.0.self_attn.k_proj')).toBeUndefined();
    expect(m.budget.steps).toBe(PATTERN_LIMITS.steps);
  });
  test('regex keys come after a literal-suffix check and only while they could still win', () => {
    const m = new PeftMatcher({ ...cfg({ target_modules: ['q_proj'] }), rank_pattern: { q_proj: 2, 'layers\\.\\d+\\.v_proj': 3 } });
    expect(m.rankKey('model.layers.3.q_proj')).toBe('q_proj');
    expect(m.budget.steps).toBe(PATTERN_LIMITS.steps); // q_proj matched by lookup; the regex cannot come first
    expect(m.rankKey('model.layers.3.k_proj')).toBeUndefined();
    expect(m.budget.steps).toBe(PATTERN_LIMITS.steps); // does not end in v_proj: regex skipped
    expect(m.rankKey('model.layers.3.v_proj')).toBe('layers\\.\\d+\\.v_proj');
  });
});

describe('Python regex syntax in configs', () => {
  test('\\Z, \\A and (?i) mean what they mean in Python', async () => {
    expect(targeted({ target_modules: '.*q_proj\\Z' }, 'a.q_proj')).toBe(true);
    expect(targeted({ target_modules: '.*q_projZ' }, 'a.q_proj')).toBe(false);
    expect(targeted({ target_modules: '\\Amodel\\..*' }, 'model.q')).toBe(true);
    expect(targeted({ target_modules: '(?i).*Q_PROJ' }, 'a.q_proj')).toBe(true);
    const spec = await loadPEFT(files({ ...pair('a.q_proj'), ...pair('a.k_proj') }, { peft_type: 'LORA', r: 4, target_modules: '(?i).*\\.Q_PROJ\\Z' }));
    expect(spec.modules.map((m) => m.path)).toEqual(['a.q_proj']);
  });
  test('what Python refuses is a ConfigError bad_regex naming the construct and the key', () => {
    const e = configFail({ peft_type: 'LORA', r: 4, target_modules: 'q_proj(?i)' });
    expect([e.code, e.key, e.got]).toEqual(['bad_regex', 'target_modules', 'q_proj(?i)']);
    expect(e.message).toBe('not a Python regular expression PEFT can use: got q_proj(?i) (global flags not at the start of the expression: (?i)) → at adapter_config.json › target_modules');
    // In a rank_pattern key the flag lands mid-pattern of (.*\.)?(K)$: Python 3.11+ raises re.error there too.
    const r = configFail({ peft_type: 'LORA', r: 4, target_modules: ['q_proj'], rank_pattern: { '(?i)Q_PROJ': 2 } });
    expect([r.code, r.key]).toEqual(['bad_regex', 'rank_pattern.(?i)Q_PROJ']);
    expect(configFail({ peft_type: 'LORA', r: 4, target_modules: ['q'], exclude_modules: '\\q' }).key).toBe('exclude_modules');
    expect(configFail({ peft_type: 'LORA', r: 4, target_modules: ['q'], alpha_pattern: { '(a)\\1': 2 } }).message).toMatch(/backreferences are not supported.*\\1/);
  });
});

describe('user regexes cannot hang a load (issue 8 items 8–11)', () => {
  afterEach(() => {
    PATTERN_LIMITS.steps = 20_000_000;
  });
  const long = `model.${'a'.repeat(41)}`;
  test('(a+)+ as target_modules against a 41-character path: answered in bounded steps', async () => {
    const m = new PeftMatcher(cfg({ target_modules: '(a+)+' }));
    expect(m.targets(long)).toBe('target_modules');
    expect(PATTERN_LIMITS.steps - m.budget.steps).toBeLessThan(2_000);
    const spec = await loadPEFT(files({ ...pair('model.q'), ...pair(long) }, { peft_type: 'LORA', r: 4, target_modules: '(a+)+|model\\.q' }));
    expect(spec.modules.map((x) => x.path)).toEqual(['model.q']);
  });
  test('(a+)+ through rank_pattern and alpha_pattern', () => {
    const m = new PeftMatcher({ ...cfg({ target_modules: ['q'] }), rank_pattern: { '(a+)+b': 2 }, alpha_pattern: { '(a|a)*b': 2 } });
    expect(m.rankKey(long)).toBeUndefined();
    expect(m.alphaKey(long)).toBeUndefined();
    expect(PATTERN_LIMITS.steps - m.budget.steps).toBeLessThan(5_000);
  });
  test('pattern keys are capped: more than PATTERN_LIMITS.keys, or more than PATTERN_LIMITS.regexKeys regexes', () => {
    const many = Object.fromEntries(Array.from({ length: PATTERN_LIMITS.keys + 1 }, (_, i) => [`m${i}`, 2]));
    const e = configFail({ peft_type: 'LORA', r: 4, target_modules: ['q'], rank_pattern: many });
    expect([e.code, e.got]).toEqual(['too_many_patterns', PATTERN_LIMITS.keys + 1]);
    const regexes = Object.fromEntries(Array.from({ length: PATTERN_LIMITS.regexKeys + 1 }, (_, i) => [`m${i}\\d+`, 2]));
    expect(configFail({ peft_type: 'LORA', r: 4, target_modules: ['q'], alpha_pattern: regexes }).code).toBe('too_many_patterns');
    // Plain keys are hashed by shape (length, dot positions); a config with more shapes than the limit is refused.
    const shapes = Object.fromEntries(Array.from({ length: PATTERN_LIMITS.shapes + 1 }, (_, i) => [`${'x'.repeat(i)}.q`, 2]));
    expect(configFail({ peft_type: 'LORA', r: 4, target_modules: ['q'], rank_pattern: shapes }).code).toBe('too_many_patterns');
  });
  test('a load that runs out of matching steps is a ConfigError regex_budget naming the pattern', async () => {
    PATTERN_LIMITS.steps = 5_000;
    const e = await fail(files({ ...pair(`m.${'a'.repeat(300)}`), ...pair(`n.${'a'.repeat(300)}`) }, { peft_type: 'LORA', r: 4, target_modules: '(.*a){20}x|m\\..*' }));
    expect(e).toBeInstanceOf(ConfigError);
    expect([e.code, e.key]).toEqual(['regex_budget', 'target_modules']);
  });
  test('no module-level cache: each load compiles its own matcher (a bad pattern never poisons the next load)', async () => {
    await expect(loadPEFT(files(pair('a.q'), { peft_type: 'LORA', r: 4, target_modules: '(' }))).rejects.toThrow(ConfigError);
    const spec = await loadPEFT(files(pair('a.q'), { peft_type: 'LORA', r: 4, target_modules: '.*q' }));
    expect(spec.modules).toHaveLength(1);
  });
});

describe('config validity as PEFT decides it (LoraConfig.__post_init__, PeftConfigMixin.__post_init__)', () => {
  const base = { peft_type: 'LORA', r: 8 };
  test.each([
    ['regex target_modules with layers_to_transform', { target_modules: '.*q', layers_to_transform: [0] }, 'layers_to_transform', '`layers_to_transform` cannot be used when `target_modules` is a str'],
    ['regex target_modules with layers_pattern', { target_modules: '.*q', layers_pattern: 'layers' }, 'layers_pattern', '`layers_pattern` cannot be used when `target_modules` is a str'],
    ['layers_pattern without layers_to_transform', { target_modules: ['q'], layers_pattern: 'layers' }, 'layers_to_transform', 'when `layers_pattern` is specified, `layers_to_transform` must also be specified'],
    ['layers_pattern with layers_to_transform = 0 (falsy in Python)', { target_modules: ['q'], layers_pattern: 'layers', layers_to_transform: 0 }, 'layers_to_transform', 'when `layers_pattern` is specified'],
    ['lora_bias with DoRA', { target_modules: ['q'], lora_bias: true, use_dora: true }, 'lora_bias', 'lora_bias=True is not supported for DoRA'],
    ['lora_bias with gaussian init', { target_modules: ['q'], lora_bias: true, init_lora_weights: 'gaussian' }, 'init_lora_weights', 'lora_bias=True is only supported with init_lora_weights=True or False'],
    ['an unknown task_type', { target_modules: ['q'], task_type: 'CAUSAL' }, 'task_type', 'invalid task type'],
  ])('%s', (_, extra, key, msg) => {
    const e = configFail({ ...base, ...extra });
    expect(e.code).toBe('config_invalid');
    const all = e.issues.length ? e.issues : [{ code: e.code, key: e.key, message: e.message }];
    expect(all.some((i) => i.code === 'config_invalid' && i.key === key && i.message.startsWith(msg))).toBe(true);
  });
  test('accepted: empty layers_pattern alone, lora_bias with init false, regex target without layer fields', () => {
    expect(() => parsePeftConfig({ ...base, target_modules: ['q'], layers_pattern: '' })).not.toThrow();
    expect(() => parsePeftConfig({ ...base, target_modules: ['q'], layers_pattern: [] })).not.toThrow();
    expect(() => parsePeftConfig({ ...base, target_modules: ['q'], lora_bias: true, init_lora_weights: false })).not.toThrow();
    expect(() => parsePeftConfig({ ...base, target_modules: '.*q' })).not.toThrow();
  });
  test('a missing "r" is LoraConfig\'s default 8', async () => {
    expect(parsePeftConfig({ peft_type: 'LORA', target_modules: ['q'] }).config.r).toBe(8);
    const spec = await loadPEFT(files(pair('a.q', 8), { peft_type: 'LORA', target_modules: ['q'] }));
    expect([spec.modules[0]!.rank, spec.modules[0]!.scale]).toEqual([8, 1]); // lora_alpha default 8 → s = 8/8
  });
});

describe('adapter names and missing keys', () => {
  test('keys naming another adapter load under that name, with a warning', async () => {
    const t = { 'base_model.model.a.q.lora_A.foo.weight': { shape: [4, 6] }, 'base_model.model.a.q.lora_B.foo.weight': { shape: [5, 4] } };
    const spec = await loadPEFT(files(t, { peft_type: 'LORA', r: 4, target_modules: ['q'] }));
    expect(spec.name).toBe('foo');
    expect(spec.warnings).toEqual([
      'the keys name adapter "foo" (…lora_A.foo.weight): loaded as adapter "foo"; PEFT, loading the default adapter, would not match these keys and would report them missing (pass adapterName to choose)',
    ]);
    expect((await loadPEFT(files(t, { peft_type: 'LORA', r: 4, target_modules: ['q'] }), { adapterName: 'foo' })).warnings).toEqual([]);
  });
  test('a target_modules entry without tensors gets the missing-keys note', async () => {
    const spec = await loadPEFT(files(pair('a.q_proj'), { peft_type: 'LORA', r: 4, target_modules: ['q_proj', 'v_proj'] }));
    expect(spec.warnings).toEqual([
      'no LoRA tensors for target_modules "v_proj": if the model has such modules, PEFT wraps them with untrained LoRA weights and warns "Found missing adapter keys while loading the checkpoint"',
    ]);
  });
  test('with the model\'s module list: the keys PEFT reports missing, in its words', async () => {
    const spec = await loadPEFT(files({ ...pair('m.layers.0.q_proj'), ...pair('m.layers.0.v_proj') }, { peft_type: 'LORA', r: 4, target_modules: ['q_proj', 'v_proj'], layers_to_transform: [0, 1] }));
    const model = ['m.layers.0.q_proj', 'm.layers.0.v_proj', 'm.layers.1.q_proj', 'm.layers.1.k_proj', 'm.layers.2.q_proj'];
    const keys = missingAdapterKeys(spec, model);
    expect(keys).toEqual(['base_model.model.m.layers.1.q_proj.lora_A.default.weight', 'base_model.model.m.layers.1.q_proj.lora_B.default.weight']);
    expect(missingKeysWarning(keys)).toBe(
      "Found missing adapter keys while loading the checkpoint: ['base_model.model.m.layers.1.q_proj.lora_A.default.weight', 'base_model.model.m.layers.1.q_proj.lora_B.default.weight'].",
    );
  });
  test('every tensor ignored: an empty adapter with the reasons, as PEFT loads it', async () => {
    const spec = await loadPEFT(files(pair('a.k_proj'), { peft_type: 'LORA', r: 4, target_modules: ['q_proj'] }));
    expect(spec.modules).toEqual([]);
    expect(spec.warnings[0]).toBe('a.k_proj: LoRA tensors ignored, as PEFT ignores them: it does not match target_modules');
  });
  test('an empty checkpoint is still an error', async () => {
    const e = await fail(files({}, { peft_type: 'LORA', r: 4, target_modules: ['q'] }));
    expect(e).toBeInstanceOf(AdapterError);
    expect(e.code).toBe('invalid_adapter');
  });
});
