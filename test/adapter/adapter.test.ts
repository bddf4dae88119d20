import { afterEach, describe, expect, test, vi } from 'vitest';
import { LoRAContainer } from '../../src/adapter/container.js';
import { JsBackend } from '../../src/backends/js.js';
import { AdapterError, ConfigError, PeftError } from '../../src/errors.js';
import { writeSafetensors, type SafeDType, type TensorToWrite } from '../../src/formats/safetensors.js';
import { loadMLX } from '../../src/mlx/load.js';
import { Linear } from '../../src/nn/linear.js';
import { Module, setPath } from '../../src/nn/module.js';
import { loadPEFT } from '../../src/peft/load.js';
import { wasmReady } from '../../src/runtime/wasm.js';
import { Tensor } from '../../src/tensor.js';
import { toF64 } from '../../src/float16.js';

/**
 * The shared adapter plumbing (src/adapter/): factors kept in their on-disk dtype (no wasm needed to load), the
 * strict config parser and the caps of both loaders, the NaN/±Inf policy, and PEFT's apply-time missing-keys warning.
 */

const enc = new TextEncoder();

/** Values exact in every dtype used here (bf16 has 8 significant bits): multiples of 1/8 below 16. */
const vals = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (((i * 7 + seed * 3) % 17) - 8) / 8);

/** IEEE bits by hand (exact for the values above): sign, biased exponent, mantissa. */
function halfBits(v: number, kind: 'F16' | 'BF16'): number {
  if (v === 0) return 0;
  if (!Number.isFinite(v)) return (kind === 'F16' ? 0x7c00 : 0x7f80) | (Number.isNaN(v) ? 1 : 0) | (v < 0 ? 0x8000 : 0);
  const [eb, mb] = kind === 'F16' ? [15, 10] : [127, 7];
  const e = Math.floor(Math.log2(Math.abs(v)));
  const m = Math.round((Math.abs(v) / 2 ** e - 1) * 2 ** mb);
  return (v < 0 ? 0x8000 : 0) | ((e + eb) << mb) | m;
}

function tensor(dtype: SafeDType, shape: number[], values: number[]): TensorToWrite {
  if (dtype === 'F32') return { dtype, shape, data: Float32Array.from(values) };
  return { dtype, shape, data: Uint16Array.from(values, (v) => halfBits(v, dtype as 'F16' | 'BF16')) };
}

/** A PEFT adapter: lora_A [r,in], lora_B [out,r] for each path, values `vals`, in `dtype`. */
function peft(paths: string[], config: object, dtype: SafeDType = 'F32', r = 2, inF = 4, out = 3, override: Record<string, number[]> = {}) {
  const t: Record<string, TensorToWrite> = {};
  paths.forEach((p, i) => {
    const a = `base_model.model.${p}.lora_A.weight`;
    const b = `base_model.model.${p}.lora_B.weight`;
    t[a] = tensor(dtype, [r, inF], override[a] ?? vals(r * inF, i));
    t[b] = tensor(dtype, [out, r], override[b] ?? vals(out * r, i + 5));
  });
  return {
    'adapter_config.json': enc.encode(JSON.stringify({ peft_type: 'LORA', r, lora_alpha: 2 * r, ...config })),
    'adapter_model.safetensors': writeSafetensors(t),
  };
}

function model(paths: string[], inF = 4, out = 3): Module {
  const m = new Module();
  const backend = new JsBackend();
  paths.forEach((p, i) => setPath(m, p, new Linear(Tensor.from(Float32Array.from(vals(out * inF, i + 11)), [out, inF], 'f32'), undefined, { backend })));
  return m;
}

async function error(p: Promise<unknown>): Promise<PeftError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(PeftError);
    return e as PeftError;
  }
  throw new Error('expected an error');
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('factors in their on-disk dtype', () => {
  test('a bf16 adapter loads without wasm, runs on the js backend, and equals the float64 formula', async () => {
    const spec = await loadPEFT(peft(['blk.q_proj'], { target_modules: ['q_proj'] }, 'BF16'));
    // Nothing started the wasm runtime: the loader needs none (init() was never called in this file).
    expect(wasmReady()).toBe(false);
    const m = spec.modules[0]!;
    expect([m.a.dtype, m.b.dtype, m.a.shape, m.b.shape]).toEqual(['bf16', 'bf16', [4, 2], [2, 3]]);

    const net = model(['blk.q_proj']);
    new LoRAContainer(spec).apply(net);
    const x = vals(2 * 4, 9);
    const y = Array.from((net.get('blk.q_proj') as Linear).forward(Tensor.from(Float32Array.from(x), [2, 4], 'f32')).data as Float32Array);
    expect(wasmReady()).toBe(false);

    // y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ in float64, from the values written (lora_A [2,4], lora_B [3,2], W [3,4], s = α/r = 2).
    const A = vals(8, 0);
    const B = vals(6, 5);
    const W = vals(12, 11);
    const want: number[] = [];
    for (let i = 0; i < 2; i++) {
      for (let o = 0; o < 3; o++) {
        let base = 0;
        for (let k = 0; k < 4; k++) base += x[i * 4 + k]! * W[o * 4 + k]!;
        let lora = 0;
        for (let j = 0; j < 2; j++) {
          let t = 0;
          for (let k = 0; k < 4; k++) t += x[i * 4 + k]! * A[j * 4 + k]!;
          lora += t * B[o * 2 + j]!;
        }
        want.push(Math.fround(base + 2 * lora));
      }
    }
    expect(y).toEqual(want);
  });

  test('host memory of a bf16 (or f16) adapter is half its f32 form; values equal', async () => {
    const bytes = (s: Awaited<ReturnType<typeof loadPEFT>>) => s.modules.reduce((n, m) => n + m.a.storage.byteLength + m.b.storage.byteLength, 0);
    const paths = ['l.0.q_proj', 'l.0.v_proj', 'l.1.q_proj'];
    const cfg = { target_modules: ['q_proj', 'v_proj'] };
    const f32 = await loadPEFT(peft(paths, cfg, 'F32', 8, 64, 48));
    for (const d of ['BF16', 'F16'] as const) {
      const half = await loadPEFT(peft(paths, cfg, d, 8, 64, 48));
      expect(bytes(half) * 2).toBe(bytes(f32));
      expect(bytes(f32)).toBe(3 * (8 * 64 + 48 * 8) * 4);
      for (let i = 0; i < paths.length; i++) {
        expect(Array.from(toF64(half.modules[i]!.a))).toEqual(Array.from(f32.modules[i]!.a.data as Float32Array));
      }
    }
  });

  test('MLX adapters keep their dtype too', async () => {
    const spec = await loadMLX({
      'adapter_config.json': enc.encode(JSON.stringify({ fine_tune_type: 'lora', num_layers: 1, lora_parameters: { rank: 2, scale: 2, dropout: 0 } })),
      'adapters.safetensors': writeSafetensors({ 'q.lora_a': tensor('F16', [4, 2], vals(8, 1)), 'q.lora_b': tensor('F16', [2, 3], vals(6, 2)) }),
    });
    expect([spec.modules[0]!.a.dtype, spec.modules[0]!.b.dtype]).toEqual(['f16', 'f16']);
  });
});

describe('config JSON and caps through the PEFT and MLX loaders', () => {
  const deep = (n: number) => `{"peft_type":"LORA","r":2,"target_modules":["q"],"x":${'['.repeat(n)}${']'.repeat(n)}}`;
  test('adapter_config.json goes through the strict parser: depth cap, repeated keys', async () => {
    const files = peft(['q'], { target_modules: ['q'] });
    // serde_json's limit: the top-level object is level 1, so 126 nested arrays are fine and 127 are not.
    await expect(loadPEFT({ ...files, 'adapter_config.json': enc.encode(deep(126)) })).resolves.toBeDefined();
    const e = await error(loadPEFT({ ...files, 'adapter_config.json': enc.encode(deep(127)) }));
    expect([e.constructor, e.code]).toEqual([ConfigError, 'config_not_json']);
    // A lower maxJsonDepth is honoured.
    expect((await error(loadPEFT({ ...files, 'adapter_config.json': enc.encode(deep(10)) }, { limits: { maxJsonDepth: 8 } }))).code).toBe('config_not_json');
    // "r" twice: which one counts would depend on the reader.
    expect((await error(loadPEFT({ ...files, 'adapter_config.json': enc.encode('{"peft_type":"LORA","r":2,"r":4,"target_modules":["q"]}') }))).code).toBe('config_not_json');
    const mlx = { 'adapters.safetensors': writeSafetensors({ 'q.lora_a': tensor('F32', [4, 2], vals(8, 1)), 'q.lora_b': tensor('F32', [2, 3], vals(6, 2)) }) };
    const mlxCfg = '{"fine_tune_type":"lora","num_layers":1,"num_layers":2,"lora_parameters":{"rank":2,"scale":2,"dropout":0}}';
    expect((await error(loadMLX({ ...mlx, 'adapter_config.json': enc.encode(mlxCfg) }))).code).toBe('config_not_json');
    expect((await error(LoRAContainer.fromMLX({ ...mlx, 'adapter_config.json': enc.encode(mlxCfg) }))).code).toBe('config_not_json');
  });

  test('limits reach the safetensors reader (maxTensors) and the pattern matcher (maxPatternKeys)', async () => {
    const files = peft(['a.q', 'b.q'], { target_modules: ['q'] });
    const e = await error(LoRAContainer.fromPEFT(files, { limits: { maxTensors: 3 } }));
    expect(e.message).toContain('maxTensors');
    const pattern = peft(['a.q'], { target_modules: ['q'], rank_pattern: { x: 2, y: 2, z: 2 } });
    await expect(loadPEFT(pattern, { limits: { maxPatternKeys: 3 } })).resolves.toBeDefined();
    const p = await error(loadPEFT(pattern, { limits: { maxPatternKeys: 2 } }));
    expect([p.code, p.message.includes('maxPatternKeys')]).toEqual(['too_many_patterns', true]);
  });
});

describe('NaN / ±Inf: loaded as written unless asked to check', () => {
  const A = 'base_model.model.q.lora_A.weight';
  const B = 'base_model.model.q.lora_B.weight';
  const withBad = (dtype: SafeDType) => peft(['q'], { target_modules: ['q'] }, dtype, 2, 4, 3, { [A]: [0, 1, NaN, 1, 0, 0, 0, Infinity], [B]: [1, 2, 3, 4, 5, -Infinity] });

  test.each(['F32', 'F16', 'BF16'] as const)('%s: default loads as PEFT does; "warn" lists them; true refuses with a typed error', async (dtype) => {
    const files = withBad(dtype);
    const plain = await loadPEFT(files);
    expect(plain.nonFinite).toBeUndefined();
    expect(plain.warnings).toEqual([]);

    const warned = await LoRAContainer.fromPEFT(files, { checkFinite: 'warn' });
    // By hand: a = lora_Aᵀ [4,2] holds NaN (A[0,2] → a[2,0], index 2·2+0 = 4) and Inf (A[1,3] → a[3,1], index 7); b = lora_Bᵀ [2,3] holds -Inf (B[2,1] → index 1·3+2 = 5).
    expect(warned.report.nonFinite).toEqual([
      { tensor: 'q a', count: 2, index: 4, value: NaN },
      { tensor: 'q b', count: 1, index: 5, value: -Infinity },
    ]);
    expect(warned.report.warnings).toHaveLength(2);
    expect(warned.report.warnings[0]).toMatch(/^q a: 2 NaN\/±Inf value\(s\), first NaN at index 4/);

    const e = await error(loadPEFT(files, { checkFinite: true }));
    expect([e.constructor, e.code, (e as AdapterError).tensor]).toEqual([AdapterError, 'non_finite', 'q a']);
    await expect(loadPEFT(peft(['q'], { target_modules: ['q'] }, dtype), { checkFinite: true })).resolves.toBeDefined();
  });
});

describe("PEFT's missing adapter keys, at apply", () => {
  // peft_model.py `PeftModel.load_adapter`: warnings.warn(f"Found missing adapter keys while loading the checkpoint: {missing_keys}")
  // for targeted modules with no weights in the file (tests/test_other.py / test_tuners_utils missing-keys cases).
  test('a targeted module with no weights: the warning in PEFT\'s words, in the report, console.warn once', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const c = await LoRAContainer.fromPEFT(peft(['blk.0.q_proj'], { target_modules: ['q_proj', 'v_proj'] }));
    const net = model(['blk.0.q_proj', 'blk.0.v_proj', 'blk.0.k_proj', 'blk.1.v_proj']);
    const fromLoad = c.report.warnings.length;
    c.apply(net);
    const want = "Found missing adapter keys while loading the checkpoint: ['base_model.model.blk.0.v_proj.lora_A.default.weight', 'base_model.model.blk.0.v_proj.lora_B.default.weight', 'base_model.model.blk.1.v_proj.lora_A.default.weight', 'base_model.model.blk.1.v_proj.lora_B.default.weight'].";
    expect(c.report.warnings.slice(fromLoad)).toEqual([want]);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0]![0]).toContain(want);
    c.unload();
    expect(c.report.warnings).toHaveLength(fromLoad);
    c.apply(net);
    expect(c.report.warnings.slice(fromLoad)).toEqual([want]);
    expect(warn).toHaveBeenCalledTimes(1); // once, as Python's default warning filter shows it
  });

  test('every targeted module has weights: no warning; the adapter name is the container\'s', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const c = await LoRAContainer.fromPEFT(peft(['blk.0.q_proj'], { target_modules: ['q_proj'] }));
    c.apply(model(['blk.0.q_proj', 'blk.0.k_proj']));
    expect(c.report.warnings).toEqual([]);
    expect(warn).not.toHaveBeenCalled();
    const named = new LoRAContainer(c.spec, { name: 'second' });
    named.apply(model(['blk.0.q_proj', 'blk.1.q_proj']));
    expect(named.report.warnings).toEqual([
      "Found missing adapter keys while loading the checkpoint: ['base_model.model.blk.1.q_proj.lora_A.second.weight', 'base_model.model.blk.1.q_proj.lora_B.second.weight'].",
    ]);
  });
});

test('one error lists at most 1,000 issues and counts the rest (a header of many bad tensors costs a count)', async () => {
  const t: Record<string, TensorToWrite> = {};
  for (let i = 0; i < 1500; i++) t[`base_model.model.m${i}.q.lora_A.weight`] = tensor('F32', [2, 4], vals(8, i)); // 1,500 A without B
  const e = await error(loadPEFT({ 'adapter_config.json': enc.encode('{"peft_type":"LORA","r":2,"target_modules":["q"]}'), 'adapter_model.safetensors': writeSafetensors(t) }));
  expect([e.code, e.issues?.length]).toEqual(['unpaired_factor', 1000]);
  expect(e.message).toContain('… and 500 more issues (the first 1000 are listed)');
});
