import { describe, expect, test } from 'vitest';
import { buildReport } from '../../src/adapter/report.js';
import { loadMLX } from '../../src/mlx/load.js';
import { loadPEFT } from '../../src/peft/load.js';

describe('buildReport', () => {
  test('modules-to-save: LoRA rows, a replacement row, totals', async () => {
    const r = buildReport(await loadPEFT('test/fixtures/golden/modules-to-save/adapter'));
    expect(r.modules.map((m) => [m.path, m.kind, m.rank, m.alpha, m.scale, m.in, m.out, m.dtype])).toEqual([
      ['model.layers.0.self_attn.q_proj', 'linear', 4, 8, 2, 37, 37, 'F32'],
      ['lm_head', 'replacement', undefined, undefined, undefined, 37, 29, 'F32'],
    ]);
    expect(r.replacements).toHaveLength(1);
    // q_proj: 4·37 + 37·4; lm_head: 29·37; F32.
    expect(r.totals).toEqual({ pairs: 1, parameters: 4 * 37 * 2 + 29 * 37, bytes: (4 * 37 * 2 + 29 * 37) * 4 });
    expect(r.toString()).toMatchInlineSnapshot(`
      "PEFT adapter "default": 1 LoRA module, 1 replacement, 1,369 parameters, 5.3 KiB
      module                           kind                     r  alpha  scale  in  out  dtype
      -------------------------------  -----------------------  -  -----  -----  --  ---  -----
      model.layers.0.self_attn.q_proj  linear                   4      8      2  37   37  F32
      lm_head                          replace:modules_to_save                   37   29  F32"
    `);
  });
  test('patterns + MLX: fractional scales print short; kinds', async () => {
    const r = buildReport(await loadPEFT('test/fixtures/golden/patterns/adapter'));
    expect(r.toString()).toMatchInlineSnapshot(`
      "PEFT adapter "default": 4 LoRA modules, 0 replacements, 976 parameters, 3.8 KiB
      module                           kind    r  alpha    scale  in  out  dtype
      -------------------------------  ------  -  -----  -------  --  ---  -----
      model.layers.0.self_attn.q_proj  linear  6      8  1.33333  37   37  F32
      model.layers.0.self_attn.v_proj  linear  4      3     0.75  37   11  F32
      model.layers.1.self_attn.q_proj  linear  2      8        4  37   37  F32
      model.layers.1.self_attn.v_proj  linear  4      3     0.75  37   11  F32"
    `);
    const mlx = buildReport(await loadMLX('test/fixtures/golden/mlx-format/adapter'));
    expect(mlx.format).toBe('mlx');
    expect(mlx.modules.every((m) => m.alpha === 80 && m.scale === 20)).toBe(true);
  });
  test('warnings are listed under the table', async () => {
    const r = buildReport(await loadPEFT('test/fixtures/golden/dora/adapter'));
    expect(r.modules.every((m) => m.kind === 'dora')).toBe(true);
    const withWarn = buildReport({ ...(await loadPEFT('test/fixtures/golden/basic/adapter')), warnings: ['something odd'] });
    expect(withWarn.toString().split('\n').slice(-2)).toEqual(['warnings:', '  ! something odd']);
  });
});
