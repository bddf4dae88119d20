import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { writeSafetensors } from '../../src/formats/safetensors.js';
import { readTorchZip } from '../../src/formats/torch-zip.js';
import { buildReport } from '../../src/adapter/report.js';
import { loadAdapter } from '../../src/adapter/detect.js';
import { loadPEFT } from '../../src/peft/load.js';
import { toF64 } from '../../src/float16.js';
import { firstDiff, readRefFile, refTranspose } from './helpers.js';

/** Real third-party adapters (test/fixtures/peft-real). Expected values worked out by hand from each config. */
const DIR = 'test/fixtures/peft-real';

function byPath<T extends { path: string }>(xs: readonly T[]): Map<string, T> {
  return new Map(xs.map((x) => [x.path, x]));
}

describe('peft-real', () => {
  test('smollm135m-qv: 30 Llama blocks × {q_proj, v_proj}, r=16, α=32 → s=2; v_proj out 192 (GQA: 3 kv heads × 64)', async () => {
    const spec = await loadPEFT(`${DIR}/smollm135m-qv`);
    const rep = buildReport(spec);
    expect(rep.totals.pairs).toBe(60);
    expect(spec.replacements).toEqual([]);
    const m = byPath(spec.modules);
    for (let i = 0; i < 30; i++) {
      const q = m.get(`model.layers.${i}.self_attn.q_proj`)!;
      const v = m.get(`model.layers.${i}.self_attn.v_proj`)!;
      expect([q.rank, q.alpha, q.scale, q.in, q.out, q.kind, q.dtype]).toEqual([16, 32, 2, 576, 576, 'linear', 'F32']);
      expect([v.rank, v.alpha, v.scale, v.in, v.out]).toEqual([16, 32, 2, 576, 192]);
    }
    // Parameters: 30 × (q: 16·576 + 576·16, v: 16·576 + 192·16) F32.
    expect(rep.totals.parameters).toBe(30 * (2 * 16 * 576 + 16 * 576 + 192 * 16));
    expect(rep.totals.bytes).toBe(rep.totals.parameters * 4);
    // auto_mapping and friends are known keys: no warnings.
    expect(spec.warnings).toEqual([]);
  });

  test('gpt2-tigrinya: Conv1D fan_in_fan_out, `c_proj` suffix hits attn and mlp; r=8, α=32 → s=4', async () => {
    const spec = await loadPEFT(`${DIR}/gpt2-tigrinya`);
    expect(spec.modules).toHaveLength(36);
    const m = byPath(spec.modules);
    for (let i = 0; i < 12; i++) {
      const attn = m.get(`transformer.h.${i}.attn.c_attn`)!;
      const proj = m.get(`transformer.h.${i}.attn.c_proj`)!;
      const mlp = m.get(`transformer.h.${i}.mlp.c_proj`)!;
      expect([attn.in, attn.out, proj.in, proj.out, mlp.in, mlp.out]).toEqual([768, 2304, 768, 768, 3072, 768]);
      for (const x of [attn, proj, mlp]) expect([x.rank, x.alpha, x.scale, x.fanInFanOut]).toEqual([8, 32, 4, true]);
    }
    expect(spec.warnings).toEqual([]);
  });

  test('opt125m-bf16: 12 OPT decoder layers × {q,v}, BF16 kept as stored (the backend widens on upload)', async () => {
    const spec = await loadPEFT(`${DIR}/opt125m-bf16`);
    expect(spec.modules).toHaveLength(24);
    const ref = readRefFile(`${DIR}/opt125m-bf16/adapter_model.safetensors`);
    for (const m of spec.modules) {
      expect(m.path).toMatch(/^model\.decoder\.layers\.\d+\.self_attn\.[qv]_proj$/);
      expect([m.rank, m.alpha, m.scale, m.in, m.out, m.dtype]).toEqual([16, 32, 2, 768, 768, 'BF16']);
      const A = ref.get(`base_model.model.${m.path}.lora_A.weight`)!;
      const B = ref.get(`base_model.model.${m.path}.lora_B.weight`)!;
      expect([m.a.dtype, m.b.dtype]).toEqual(['bf16', 'bf16']);
      expect(firstDiff(toF64(m.a), refTranspose(A.values, 16, 768))).toBeUndefined();
      expect(firstDiff(toF64(m.b), refTranspose(B.values, 768, 16))).toBeUndefined();
    }
  });

  test('distilbert-imdb: modules_to_save `classifier` also takes `pre_classifier` (peft matches with endswith)', async () => {
    const spec = await loadPEFT(`${DIR}/distilbert-imdb`);
    expect(spec.modules).toHaveLength(12);
    for (const m of spec.modules) expect([m.rank, m.alpha, m.scale, m.in, m.out]).toEqual([8, 16, 2, 768, 768]);
    const reps = byPath(spec.replacements);
    expect([...reps.keys()].sort()).toEqual(['classifier', 'pre_classifier']);
    expect(reps.get('classifier')!.kind).toBe('modules_to_save');
    expect(reps.get('classifier')!.tensors.weight!.shape).toEqual([2, 768]);
    expect(reps.get('classifier')!.tensors.bias!.shape).toEqual([2]);
    expect(reps.get('pre_classifier')!.tensors.weight!.shape).toEqual([768, 768]);
    const ref = readRefFile(`${DIR}/distilbert-imdb/adapter_model.safetensors`);
    expect(firstDiff(reps.get('pre_classifier')!.tensors.weight!.data as Float32Array, ref.get('base_model.model.pre_classifier.weight')!.values)).toBeUndefined();
    const rows = buildReport(spec).modules.filter((r) => r.kind === 'replacement');
    expect(rows.map((r) => [r.path, r.in, r.out])).toEqual([['classifier', 768, 2], ['pre_classifier', 768, 768]]);
  });

  test('t5-small-peft02-bin: PEFT 0.2 config (enable_lora null) loads; the .bin equals a safetensors copy of it', async () => {
    const bin = new Uint8Array(readFileSync(`${DIR}/t5-small-peft02-bin/adapter_model.bin`));
    const config = new Uint8Array(readFileSync(`${DIR}/t5-small-peft02-bin/adapter_config.json`));
    const fromBin = await loadAdapter(`${DIR}/t5-small-peft02-bin`);
    const raw = await readTorchZip(bin, { file: 'adapter_model.bin' });
    const st = writeSafetensors(Object.fromEntries([...raw].map(([k, t]) => [k, { dtype: t.dtype, shape: t.shape, data: t.data }])));
    const fromSt = await loadPEFT({ 'adapter_config.json': config, 'adapter_model.safetensors': st });

    // t5-small: 6 encoder blocks × SelfAttention{q,v} + 6 decoder blocks × {SelfAttention, EncDecAttention}{q,v} = 36; d_model 512.
    expect(fromBin.modules).toHaveLength(36);
    for (const m of fromBin.modules) {
      expect(m.path).toMatch(/^(encoder|decoder)\.block\.\d\.layer\.[01]\.(SelfAttention|EncDecAttention)\.[qv]$/);
      expect([m.rank, m.alpha, m.scale, m.in, m.out]).toEqual([16, 32, 2, 512, 512]);
    }
    expect(fromSt.modules.map((m) => m.path).sort()).toEqual(fromBin.modules.map((m) => m.path).sort());
    const bins = byPath(fromBin.modules);
    fromSt.modules.forEach((m) => {
      const o = bins.get(m.path)!;
      expect([m.rank, m.scale, m.dtype]).toEqual([o.rank, o.scale, o.dtype]);
      expect(Buffer.from(m.a.data.buffer).equals(Buffer.from(o.a.data.buffer))).toBe(true);
      expect(Buffer.from(m.b.data.buffer).equals(Buffer.from(o.b.data.buffer))).toBe(true);
    });
    // enable_lora and merge_weights are known (PEFT 0.2) keys: no warnings.
    expect(fromBin.warnings).toEqual([]);
  });
});
