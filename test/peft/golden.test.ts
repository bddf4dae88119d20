import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { loadMLX } from '../../src/mlx/load.js';
import { loadPEFT } from '../../src/peft/load.js';
import type { AdapterSpec } from '../../src/adapter/spec.js';
import { toF64 } from '../../src/float16.js';
import { firstDiff, readRefFile, refTranspose } from './helpers.js';

const ROOT = 'test/fixtures/golden';

interface CaseModule {
  path: string;
  kind: string;
  in: number;
  out: number;
  rank?: number;
  alpha?: number;
  scale?: number;
  adapter?: string;
  dtype?: string;
  conv1d?: boolean;
}
interface Case {
  name: string;
  modules: CaseModule[];
}

const cases = readdirSync(ROOT).filter((d) => existsSync(join(ROOT, d, 'case.json')));

describe.each(cases)('golden/%s', (name) => {
  const dir = join(ROOT, name);
  const c = JSON.parse(readFileSync(join(dir, 'case.json'), 'utf8')) as Case;
  const adapters = readdirSync(dir).filter((d) => d.startsWith('adapter'));
  const mlx = name === 'mlx-format';

  test.each(adapters)('%s: per-module rank, alpha, scale, shapes and tensors', async (adapter) => {
    const path = join(dir, adapter);
    const spec: AdapterSpec = mlx ? await loadMLX(path) : await loadPEFT(path);
    const ref = readRefFile(join(path, mlx ? 'adapters.safetensors' : 'adapter_model.safetensors'));
    const want = c.modules.filter((m) => (m.adapter ?? 'adapter') === adapter);
    const lora = want.filter((m) => ['linear', 'dora', 'embedding'].includes(m.kind));
    expect(spec.modules.map((m) => m.path).sort()).toEqual(lora.map((m) => m.path).sort());

    for (const w of lora) {
      const m = spec.modules.find((x) => x.path === w.path)!;
      expect({ kind: m.kind, rank: m.rank, scale: m.scale, in: m.in, out: m.out, dtype: m.dtype }).toEqual({
        kind: w.kind, rank: w.rank, scale: w.scale, in: w.in, out: w.out, dtype: w.dtype,
      });
      if (w.alpha !== undefined) expect(m.alpha).toBe(w.alpha);
      else expect(m.alpha).toBe(w.scale! * w.rank!); // MLX: alpha reported as scale·rank
      if (w.conv1d !== undefined) expect(m.fanInFanOut).toBe(w.conv1d);
      expect(m.a.shape).toEqual([w.in, w.rank]);
      expect(m.b.shape).toEqual([w.rank, w.out]);

      // Independent conversion: PEFT A [r,in] → a = Aᵀ, B [out,r] → b = Bᵀ; MLX already [in,r] / [r,out].
      const P = `base_model.model.${w.path}`;
      const [aKey, bKey] = mlx ? [`${w.path}.lora_a`, `${w.path}.lora_b`]
        : w.kind === 'embedding' ? [`${P}.lora_embedding_A`, `${P}.lora_embedding_B`]
        : name === 'adapter-name-keys' ? [`${P}.lora_A.default.weight`, `${P}.lora_B.default.weight`]
        : [`${P}.lora_A.weight`, `${P}.lora_B.weight`];
      const A = ref.get(aKey)!;
      const B = ref.get(bKey)!;
      const a = mlx ? A.values : refTranspose(A.values, w.rank!, w.in);
      const b = mlx ? B.values : refTranspose(B.values, w.out, w.rank!);
      // Factors keep their on-disk dtype (F64 narrowed to f32); the values are the file's.
      expect(m.a.dtype).toBe({ F16: 'f16', BF16: 'bf16' }[w.dtype!] ?? 'f32');
      expect(firstDiff(toF64(m.a), a), `${w.path} a`).toBeUndefined();
      expect(firstDiff(toF64(m.b), b), `${w.path} b`).toBeUndefined();
      const bias = ref.get(`${P}.lora_B.bias`);
      if (bias) expect(firstDiff(toF64(m.bias!), bias.values)).toBeUndefined();
      else expect(m.bias).toBeUndefined();
      const mag = ref.get(mlx ? `${w.path}.m` : `${P}.lora_magnitude_vector`);
      if (mag) expect(firstDiff(toF64(m.magnitude!), mag.values)).toBeUndefined();
      else expect(m.magnitude).toBeUndefined();
    }

    // Replacements: modules_to_save weights and base biases, equal to the file's.
    const reps = want.filter((m) => m.kind === 'replacement');
    for (const w of reps) {
      const r = spec.replacements.find((x) => x.path === w.path)!;
      expect(r.kind).toBe('modules_to_save');
      expect(r.tensors.weight!.shape).toEqual([w.out, w.in]);
      expect(firstDiff(r.tensors.weight!.data as Float32Array, ref.get(`base_model.model.${w.path}.weight`)!.values)).toBeUndefined();
    }
    if (name === 'bias-all') {
      expect(spec.replacements.map((r) => [r.kind, r.path]).sort()).toEqual(lora.map((m) => ['bias', m.path]).sort());
      for (const r of spec.replacements) expect(firstDiff(r.tensors.bias!.data as Float32Array, ref.get(`base_model.model.${r.path}.bias`)!.values)).toBeUndefined();
    } else if (!reps.length) {
      expect(spec.replacements).toEqual([]);
    }
    expect(spec.warnings).toEqual([]);
  });
});
