// Golden-case loading and the float64 reference the GPU tests compare against. Runtime-neutral (Node and
// Deno): it takes the file bytes from a `readFile` the caller supplies.
import { Tensor } from '../../src/tensor.js';
import type { DType } from '../../src/dtype.js';
import type { Backend, LoRADelta } from '../../src/backends/backend.js';

export const GOLDEN_CASES = [
  'adapter-name-keys', 'basic', 'bias-all', 'conv1d-fan-in-fan-out', 'dora', 'dtype-bf16', 'dtype-f16', 'embedding',
  'lora-bias', 'mlx-format', 'modules-to-save', 'patterns', 'qlora-affine', 'regex-target', 'rslora', 'stacked',
] as const;

const ST_DTYPES: Record<string, DType> = { F64: 'f64', F32: 'f32', F16: 'f16', BF16: 'bf16', I32: 'i32', U32: 'u32' };

/** A tiny safetensors reader (tests only): name → CPU tensor (copied, aligned). */
export function readSafetensors(bytes: Uint8Array): Map<string, Tensor> {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(dv.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const out = new Map<string, Tensor>();
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const dtype = ST_DTYPES[e.dtype];
    const copy = bytes.slice(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]);
    out.set(name, new Tensor(e.shape, dtype, { device: 'cpu', byteLength: copy.byteLength, bytes: () => copy, read: async () => copy, dispose() {}, disposed: false }));
  }
  return out;
}

/** f16 / bf16 / f32 / f64 tensor → float64 values. */
export function toF64(t: Tensor): Float64Array {
  const d = t.data;
  if (t.dtype === 'bf16') return Float64Array.from(d as Uint16Array, (b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]);
  if (t.dtype === 'f16') {
    return Float64Array.from(d as Uint16Array, (h) => {
      const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
      return e === 0 ? s * f * 2 ** -24 : e === 31 ? (f ? NaN : s * Infinity) : s * (1 + f / 1024) * 2 ** (e - 15);
    });
  }
  return Float64Array.from(d as ArrayLike<number>);
}

/** [rows, cols] → [cols, rows], same dtype (for PEFT lora_A [r,in] → A [in,r], lora_B [out,r] → B [r,out]). */
export function transpose(t: Tensor): Tensor {
  const [rows, cols] = t.shape;
  type Arr = { [i: number]: number; length: number };
  const src = t.data as unknown as Arr;
  const dst = new (t.data.constructor as new (n: number) => Arr)(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) dst[j * rows + i] = src[i * cols + j];
  return Tensor.from(dst as never, [cols, rows], t.dtype as never);
}

export interface LayerCase {
  /** Test title: case › module › variant. */
  title: string;
  op: 'linear' | 'quantized' | 'embedding';
  x: Tensor; // x [m,k] f32 or ids [m] i32
  w: Tensor; // W [n,k] (or E [vocab,dim]; or packed u32 for quantized)
  bias?: Tensor;
  q?: { scales: Tensor; biases: Tensor; bits: 4 | 8; groupSize: number; k: number; n: number };
  /** Variants: each with its deltas, optional DoRA row scale and replacements, and the expected output. */
  variants: { name: string; deltas: LoRADelta[]; rowScale?: Tensor; w?: Tensor; bias?: Tensor; expect: Float64Array }[];
  tol: (expect: Float64Array) => number;
}

/** Tolerance from the fixtures: max|y − y_exp| ≤ 1e-4 · max(1, max|y_exp|). */
export const goldenTol = (e: Float64Array) => 1e-4 * Math.max(1, ...Array.from(e, Math.abs));

function f64Tensor(v: Float64Array, shape: number[]): Tensor<'f32'> {
  return Tensor.f32(v, shape);
}

/** The layer cases of one golden fixture folder (PEFT tensors turned into the internal layout). */
export async function loadGolden(name: string, readFile: (path: string) => Promise<Uint8Array>, root: string): Promise<LayerCase[]> {
  const dir = `${root}/${name}`;
  const spec = JSON.parse(new TextDecoder().decode(await readFile(`${dir}/case.json`)));
  const base = readSafetensors(await readFile(`${dir}/base.safetensors`));
  const io = readSafetensors(await readFile(`${dir}/io.safetensors`));
  const adapterFiles = new Map<string, Map<string, Tensor>>();
  const adapterOf = async (a: string) => {
    if (!adapterFiles.has(a)) {
      const file = spec.name === 'mlx-format' ? 'adapters.safetensors' : 'adapter_model.safetensors';
      adapterFiles.set(a, readSafetensors(await readFile(`${dir}/${a}/${file}`)));
    }
    return adapterFiles.get(a)!;
  };
  const get = (m: Map<string, Tensor>, k: string) => {
    const t = m.get(k);
    if (!t) throw new Error(`missing tensor ${k}`);
    return t;
  };
  const cases: LayerCase[] = [];
  const seen = new Set<string>();
  for (const mod of spec.modules as { path: string; kind: string; in: number; out: number; scale: number; adapter: string; conv1d?: boolean }[]) {
    if (seen.has(mod.path)) continue;
    seen.add(mod.path);
    const p = mod.path;
    const mods = (spec.modules as (typeof mod)[]).filter((x) => x.path === p);
    const deltaOf = async (mm: typeof mod, scale = mm.scale): Promise<LoRADelta> => {
      const ad = await adapterOf(mm.adapter);
      if (spec.name === 'mlx-format') return { a: get(ad, `${p}.lora_a`), b: get(ad, `${p}.lora_b`), scale };
      const key = `base_model.model.${p}`;
      if (mm.kind === 'embedding') {
        return { a: transpose(get(ad, `${key}.lora_embedding_A`)), b: transpose(get(ad, `${key}.lora_embedding_B`)), scale };
      }
      const sfx = ad.has(`${key}.lora_A.weight`) ? '' : '.default';
      return {
        a: transpose(get(ad, `${key}.lora_A${sfx}.weight`)),
        b: transpose(get(ad, `${key}.lora_B${sfx}.weight`)),
        scale,
        bias: ad.get(`${key}.lora_B${sfx}.bias`),
      };
    };
    const yOn = io.get(`${p}.y_on`), yOff = io.get(`${p}.y_off`);
    const title = `${name} › ${p}`;
    const expect = (t: Tensor | undefined) => toF64(t!);
    if (mod.kind === 'embedding') {
      const d = await deltaOf(mod);
      cases.push({
        title, op: 'embedding', x: get(io, `${p}.ids`), w: get(base, `${p}.weight`), tol: goldenTol,
        variants: [{ name: 'off', deltas: [], expect: expect(yOff) }, { name: 'on', deltas: [d], expect: expect(yOn) }],
      });
      continue;
    }
    const x = get(io, `${p}.x`);
    if (mod.kind === 'untouched') {
      cases.push({ title, op: 'linear', x, w: get(base, `${p}.weight`), bias: base.get(`${p}.bias`), tol: goldenTol,
        variants: [{ name: 'off', deltas: [], expect: expect(yOff) }, { name: 'on (untargeted)', deltas: [], expect: expect(yOn) }] });
      continue;
    }
    if (mod.kind === 'replacement') {
      const ad = await adapterOf(mod.adapter);
      cases.push({ title, op: 'linear', x, w: get(base, `${p}.weight`), bias: base.get(`${p}.bias`), tol: goldenTol,
        variants: [{ name: 'off', deltas: [], expect: expect(yOff) },
          { name: 'on (modules_to_save)', deltas: [], w: get(ad, `base_model.model.${p}.weight`), expect: expect(yOn) }] });
      continue;
    }
    if (spec.quantization) {
      const { bits, group_size } = spec.quantization;
      const d = await deltaOf(mod);
      cases.push({ title, op: 'quantized', x, w: get(base, `${p}.weight`), bias: base.get(`${p}.bias`), tol: goldenTol,
        q: { scales: get(base, `${p}.scales`), biases: get(base, `${p}.biases`), bits, groupSize: group_size, k: mod.in, n: mod.out },
        variants: [{ name: 'off', deltas: [], expect: expect(yOff) }, { name: 'on', deltas: [d], expect: expect(yOn) }] });
      continue;
    }
    let w = get(base, `${p}.weight`);
    if (mod.conv1d) w = transpose(w); // GPT-2 Conv1D stores W as [in, out]
    const bias = base.get(`${p}.bias`);
    const c: LayerCase = { title, op: 'linear', x, w, bias, tol: goldenTol, variants: [{ name: 'off', deltas: [], expect: expect(yOff) }] };
    if (mods.length > 1) {
      // stacked: both, each alone, and runtime multipliers (s = k·alpha/r).
      const rs = spec.runtime_scales as Record<string, number>;
      const ds = await Promise.all(mods.map((mm) => deltaOf(mm)));
      c.variants.push({ name: 'on (both)', deltas: ds, expect: expect(yOn) });
      c.variants.push({ name: 'only a', deltas: [ds[0]], expect: expect(io.get(`${p}.y_a`)) });
      c.variants.push({ name: 'only b', deltas: [ds[1]], expect: expect(io.get(`${p}.y_b`)) });
      c.variants.push({ name: 'scaled', deltas: mods.map((mm, i) => ({ ...ds[i], scale: mm.scale * rs[mm.adapter] })), expect: expect(io.get(`${p}.y_scaled`)) });
    } else {
      const d = await deltaOf(mod);
      const v: LayerCase['variants'][number] = { name: 'on', deltas: [d], expect: expect(yOn) };
      if (mod.kind === 'dora') v.rowScale = doraRowScale(w, d, (await adapterOf(mod.adapter)).get(`base_model.model.${p}.lora_magnitude_vector`)!);
      const adBias = (await adapterOf(mod.adapter)).get(`base_model.model.${p}.bias`);
      if (adBias) v.bias = adBias; // bias = "all"
      c.variants.push(v);
    }
    cases.push(c);
  }
  return cases;
}

/** DoRA: g = m / ‖W + s·(A·B)ᵀ‖ per output row, in float64. */
export function doraRowScale(w: Tensor, d: LoRADelta, mag: Tensor): Tensor<'f32'> {
  const [n, k] = w.shape;
  const W = toF64(w), A = toF64(d.a), B = toF64(d.b), M = toF64(mag);
  const r = d.a.shape[1];
  const g = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let ss = 0;
    for (let j = 0; j < k; j++) {
      let v = W[i * k + j];
      for (let q = 0; q < r; q++) v += d.scale * A[j * r + q] * B[q * n + i];
      ss += v * v;
    }
    g[i] = M[i] / Math.sqrt(ss);
  }
  return f64Tensor(g, [n]);
}

/** float64 reference of Backend.linear (y = rs ⊙ (x·Wᵀ + Σ s·(x·A)·B + Σ s·lb) + bias). */
export function refLinear(x: Tensor, w: Tensor, bias: Tensor | undefined, deltas: readonly LoRADelta[], rowScale?: Tensor): Float64Array {
  const [n, k] = w.shape;
  const m = x.size / k;
  const X = toF64(x), W = toF64(w);
  const y = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let c = 0; c < n; c++) {
    let v = 0;
    for (let j = 0; j < k; j++) v += X[i * k + j] * W[c * k + j];
    y[i * n + c] = v;
  }
  for (const d of deltas) {
    const r = d.a.shape[1], A = toF64(d.a), B = toF64(d.b), lb = d.bias && toF64(d.bias);
    for (let i = 0; i < m; i++) {
      const t = new Float64Array(r);
      for (let q = 0; q < r; q++) for (let j = 0; j < k; j++) t[q] += X[i * k + j] * A[j * r + q];
      for (let c = 0; c < n; c++) {
        let v = lb ? lb[c] : 0;
        for (let q = 0; q < r; q++) v += t[q] * B[q * n + c];
        y[i * n + c] += d.scale * v;
      }
    }
  }
  const rs = rowScale && toF64(rowScale), b = bias && toF64(bias);
  for (let i = 0; i < m; i++) for (let c = 0; c < n; c++) {
    if (rs) y[i * n + c] *= rs[c];
    if (b) y[i * n + c] += b[c];
  }
  return y;
}

/** Dequantises MLX affine weights to a float64 [n,k] (reference only). */
export function dequantize(w: Tensor, scales: Tensor, biases: Tensor, bits: number, groupSize: number, k: number, n: number): Tensor<'f32'> {
  const P = w.data as Uint32Array, S = toF64(scales), Bi = toF64(biases);
  const per = 32 / bits, mask = (1 << bits) - 1, words = k / per, groups = k / groupSize;
  const out = new Float64Array(n * k);
  for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) {
    const q = (P[i * words + Math.floor(j / per)] >>> ((j % per) * bits)) & mask;
    const g = i * groups + Math.floor(j / groupSize);
    out[i * k + j] = S[g] * q + Bi[g];
  }
  return f64Tensor(out, [n, k]);
}

/** Runs one variant of a case on a backend (weights through `upload`, as layers do). */
export function runVariant(be: Backend, c: LayerCase, v: LayerCase['variants'][number]): Tensor {
  const up = (t: Tensor | undefined) => t && be.upload(t);
  const deltas = v.deltas.map((d) => ({ ...d, a: up(d.a)!, b: up(d.b)!, bias: up(d.bias) }));
  if (c.op === 'embedding') return be.embedding(c.x, up(c.w)!, deltas);
  if (c.op === 'quantized') {
    const q = c.q!;
    return be.quantizedLinear(c.x, { w: up(c.w)!, scales: up(q.scales)!, biases: up(q.biases)!, bits: q.bits, groupSize: q.groupSize, k: q.k, n: q.n }, up(v.bias ?? c.bias), deltas, up(v.rowScale));
  }
  return be.linear(c.x, up(v.w ?? c.w)!, up(v.bias ?? c.bias), deltas, up(v.rowScale));
}

/** First bad index, ref, got, max error, shape — or undefined when within tol. */
export function compare(got: ArrayLike<number>, ref: ArrayLike<number>, tol: number, shape: readonly number[]): string | undefined {
  if (got.length !== ref.length) return `length ${got.length} ≠ ${ref.length} (shape [${shape}])`;
  let maxErr = 0, first = -1;
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs(got[i] - ref[i]);
    if (!(e <= tol) && first < 0) first = i;
    if (!(e <= maxErr)) maxErr = e;
  }
  if (first < 0) return undefined;
  return `first bad index ${first}: ref ${ref[first]}, got ${got[first]}; max error ${maxErr} > tol ${tol}; shape [${shape}]`;
}
