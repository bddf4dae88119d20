// `peftjs merge`: the merged checkpoint is a plain HF folder whose weights equal the float64 merged weights of the
// golden cases (io.safetensors `<path>.merged.weight/bias`, from PEFT's formulas) and whose layers, loaded with no
// adapter, give the unmerged model's outputs with the adapter on (y_on).
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mergeCheckpoint, parseSize } from '../../src/cli/merge.js';
import { init } from '../../src/backends/index.js';
import { writeSafetensors } from '../../src/formats/safetensors.js';
import { LoRAContainer } from '../../src/adapter/container.js';
import { Module } from '../../src/nn/module.js';
import { loadModel } from '../../src/models/load-model.js';
import { toF64 } from '../../src/nn/float.js';
import { Tensor as TensorClass, type Tensor } from '../../src/tensor.js';
import { expectClose, GOLDEN, readSafetensors } from '../lora/helpers.js';

const ROOT = new URL('../../', import.meta.url).pathname;
let tmp: string;
beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'peftjs-merge-'));
  await init();
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A model folder from a golden case: base.safetensors as model.safetensors, and a config.json. */
function modelDir(name: string, modelType = 'llama', extra?: Record<string, Tensor>): string {
  const dir = join(tmp, `${name}-model`);
  if (extra) {
    const base = readSafetensors(join(GOLDEN, name, 'base.safetensors'));
    const all = { ...Object.fromEntries(base), ...extra };
    const bytes = writeSafetensors(
      Object.fromEntries(Object.entries(all).map(([k, t]) => [k, { dtype: t.dtype.toUpperCase() as 'F32', shape: t.shape, data: t.data as ArrayBufferView }])),
    );
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'model.safetensors'), bytes);
  } else {
    mkdirSync(dir, { recursive: true });
    copyFileSync(join(GOLDEN, name, 'base.safetensors'), join(dir, 'model.safetensors'));
  }
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: modelType, hidden_size: 37 }));
  writeFileSync(join(dir, 'tokenizer.json'), '{"version":"1.0"}');
  return dir;
}

/** Every tensor of a checkpoint folder (one file or an index of shards) as float64, by name. */
function readCheckpoint(dir: string): Map<string, Tensor> {
  const index = join(dir, 'model.safetensors.index.json');
  const shards = existsSync(index) ? [...new Set(Object.values((JSON.parse(readFileSync(index, 'utf8')) as { weight_map: Record<string, string> }).weight_map))] : ['model.safetensors'];
  return new Map(shards.flatMap((s) => [...readSafetensors(join(dir, s))]));
}

const bytesOf = (t: Tensor) => {
  const d = t.data as ArrayBufferView;
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
};

const CASES: [string, string][] = [
  ['basic', 'llama'],
  ['rslora', 'llama'],
  ['patterns', 'llama'],
  ['dora', 'llama'],
  ['lora-bias', 'llama'],
  ['bias-all', 'llama'],
  ['embedding', 'llama'],
  ['modules-to-save', 'llama'],
  ['conv1d-fan-in-fan-out', 'gpt2'],
  ['mlx-format', 'llama'],
];

describe('merge: every golden case', () => {
  test.each(CASES)('%s: merged weights = float64 merged reference; forward of the merged model = y_on', async (name, modelType) => {
    const model = modelDir(name, modelType);
    const out = join(tmp, `${name}-out`);
    const adapter = join(GOLDEN, name, 'adapter');
    const r = await mergeCheckpoint({ model, adapter, out });
    expect(r.files.sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json']);
    expect(readFileSync(join(out, 'config.json'), 'utf8')).toBe(readFileSync(join(model, 'config.json'), 'utf8'));

    const io = readSafetensors(join(GOLDEN, name, 'io.safetensors'));
    const merged = readCheckpoint(out);
    const base = readCheckpoint(model);
    expect([...merged.keys()].sort()).toEqual([...new Set([...base.keys(), ...[...io.keys()].filter((k) => k.endsWith('.merged.bias')).map((k) => k.replace('.merged.bias', '.bias'))])].sort());
    let checked = 0;
    for (const [key, want] of io) {
      const m = /^(.*)\.merged\.(weight|bias)$/.exec(key);
      if (!m) continue;
      const got = merged.get(`${m[1]}.${m[2]}`)!;
      expect(got.dtype).toBe(base.get(`${m[1]}.${m[2]}`)?.dtype ?? 'f32');
      expectClose(toF64(got), want.data as Float64Array, want.shape, 1e-5, key);
      checked++;
    }
    // Tensors the adapter does not touch are copied byte for byte.
    for (const [k, t] of base) if (!r.merged.some((p) => k.startsWith(`${p}.`))) expect(Buffer.compare(bytesOf(merged.get(k)!), bytesOf(t)), k).toBe(0);

    // The merged checkpoint, loaded as a plain model, computes what the unmerged model computes with the adapter on.
    const plain = await loadModel(out, { modelType });
    const unmerged = await loadModel(model, { modelType });
    (await LoRAContainer.load(adapter)).apply(unmerged);
    for (const path of r.merged) {
      const x = io.get(`${path}.x`) ?? io.get(`${path}.ids`)!;
      const want = io.get(`${path}.y_on`)!;
      const layer = plain.get(path) as Module & { forward(t: Tensor): Tensor };
      expectClose(layer.forward(x).toCpu().data, want.data as Float64Array, want.shape, 1e-4, `${path} y_on`);
      const withAdapter = (unmerged.get(path) as Module & { forward(t: Tensor): Tensor }).forward(x).toCpu().data;
      expectClose(layer.forward(x).toCpu().data, Float64Array.from(withAdapter), want.shape, 1e-4, `${path} vs unmerged`);
    }
    expect(checked + r.merged.length).toBeGreaterThan(0);
  });
});

test('shards: --max-shard-size splits the checkpoint as transformers does; loading the shards gives the same tensors', async () => {
  // An extra bf16 tensor the adapter does not touch: copied byte for byte, never converted.
  const extra = { 'model.norm.weight': TensorClass.from(Uint16Array.from({ length: 37 * 40 }, (_, i) => 0x3f80 + i), [40, 37], 'bf16') };
  const model = modelDir('basic', 'llama', extra);
  const one = join(tmp, 'shard-one');
  const many = join(tmp, 'shard-many');
  await mergeCheckpoint({ model, adapter: join(GOLDEN, 'basic/adapter'), out: one });
  const r = await mergeCheckpoint({ model, adapter: join(GOLDEN, 'basic/adapter'), out: many, maxShardBytes: 6000 });
  const shards = readdirSync(many).filter((f) => f.endsWith('.safetensors')).sort();
  expect(shards.length).toBeGreaterThan(1);
  expect(shards[0]).toBe(`model-00001-of-${String(shards.length).padStart(5, '0')}.safetensors`);
  const index = JSON.parse(readFileSync(join(many, 'model.safetensors.index.json'), 'utf8')) as { metadata: { total_size: number }; weight_map: Record<string, string> };
  expect(index.metadata.total_size).toBe(r.bytes);
  expect(new Set(Object.values(index.weight_map))).toEqual(new Set(shards));
  // No shard over the limit unless it holds a single tensor bigger than the limit.
  for (const s of shards) {
    const file = readFileSync(join(many, s));
    const data = file.byteLength - 8 - Number(file.readBigUInt64LE(0));
    const names = Object.entries(index.weight_map).filter(([, f]) => f === s);
    if (names.length > 1) expect(data).toBeLessThanOrEqual(6000);
  }
  const a = readCheckpoint(one);
  const b = readCheckpoint(many);
  expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
  for (const [k, t] of a) expect(Buffer.compare(bytesOf(b.get(k)!), bytesOf(t)), k).toBe(0);
  // The untouched bf16 tensor went through unconverted.
  expect(b.get('model.norm.weight')!.dtype).toBe('bf16');
  expect(Buffer.compare(bytesOf(b.get('model.norm.weight')!), bytesOf(extra['model.norm.weight']!))).toBe(0);
});

test('parseSize: transformers-style sizes', () => {
  expect(parseSize('5GB')).toBe(5e9);
  expect(parseSize('500MB')).toBe(5e8);
  expect(parseSize('64KiB')).toBe(65536);
  expect(parseSize('1048576')).toBe(1048576);
  expect(() => parseSize('lots')).toThrow(/not a size/);
});

test('peftjs merge (the built CLI) writes the checkpoint and says what it did', () => {
  const model = modelDir('basic');
  const out = join(tmp, 'cli-out');
  const r = spawnSync(process.execPath, [`${ROOT}dist/cli.js`, 'merge', '--model', model, '--adapter', join(GOLDEN, 'basic/adapter'), '--out', out], { encoding: 'utf8', timeout: 60_000 });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  expect(r.stdout).toMatch(/^merged 4 layers; wrote 4 tensors/);
  expect(existsSync(join(out, 'model.safetensors'))).toBe(true);
  const bad = spawnSync(process.execPath, [`${ROOT}dist/cli.js`, 'merge', '--model', model], { encoding: 'utf8', timeout: 60_000 });
  expect(bad.status).toBe(1);
  expect(bad.stderr).toContain('merge needs --model DIR --adapter DIR --out DIR');
});

test('a bf16 checkpoint stays bf16: each merged weight is W + s·(B·A)ᵀ in float64, rounded once (within ½ ulp of bf16)', async () => {
  // The basic case's base, narrowed to bf16 (truncation is fine: this is the checkpoint, not the result).
  const base = readSafetensors(join(GOLDEN, 'basic/base.safetensors'));
  const bf16 = Object.fromEntries(
    [...base].map(([k, t]) => {
      const bits = new Uint32Array(new Float32Array(t.data as Float32Array).buffer);
      return [k, TensorClass.from(Uint16Array.from(bits, (b) => b >>> 16), t.shape, 'bf16')];
    }),
  );
  const dir = join(tmp, 'bf16-model');
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'model.safetensors'),
    writeSafetensors(Object.fromEntries(Object.entries(bf16).map(([k, t]) => [k, { dtype: 'BF16' as const, shape: t.shape, data: t.data as ArrayBufferView }]))),
  );
  const out = join(tmp, 'bf16-out');
  const r = await mergeCheckpoint({ model: dir, adapter: join(GOLDEN, 'basic/adapter'), out });
  const merged = readCheckpoint(out);
  const adapter = readSafetensors(join(GOLDEN, 'basic/adapter/adapter_model.safetensors'));
  const cfg = JSON.parse(readFileSync(join(GOLDEN, 'basic/adapter/adapter_config.json'), 'utf8')) as { r: number; lora_alpha: number };
  const s = cfg.lora_alpha / cfg.r;
  for (const path of r.merged) {
    const got = merged.get(`${path}.weight`)!;
    expect(got.dtype).toBe('bf16');
    const W = toF64(bf16[`${path}.weight`]!);
    const A = adapter.get(`base_model.model.${path}.lora_A.weight`)!; // [r, in]
    const B = adapter.get(`base_model.model.${path}.lora_B.weight`)!; // [out, r]
    const [rank, inF] = A.shape as [number, number];
    const outF = B.shape[0]!;
    const a = A.data as Float32Array;
    const b = B.data as Float32Array;
    const g = toF64(got);
    for (let o = 0; o < outF; o++) {
      for (let i = 0; i < inF; i++) {
        let d = 0;
        for (let j = 0; j < rank; j++) d += b[o * rank + j]! * a[j * inF + i]!;
        const want = W[o * inF + i]! + s * d;
        const halfUlp = want === 0 ? 0 : 2 ** (Math.floor(Math.log2(Math.abs(want))) - 8);
        expect(Math.abs(g[o * inF + i]! - want), `${path}[${o},${i}]`).toBeLessThanOrEqual(halfUlp);
      }
    }
  }
});
