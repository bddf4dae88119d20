import { BackendError } from '../errors.js';
import { Tensor } from '../tensor.js';
import { toF64 as tensorToF64 } from '../float16.js';
import { isQuantized, routeGroups, routePasses, type AttentionShape, type Backend, type LinearWeight, type LoRADelta, type QuantizedWeight, type Route, type UploadOptions } from './backend.js';
import { CpuOps } from './cpu-ops.js';

/**
 * The float64 reference backend: every op is a plain triple loop that accumulates in float64 and rounds
 * once to f32 at the end. It is slow on purpose and exists to be obviously right; the wasm and WebGPU
 * kernels are tested against the pure `ref*` functions below.
 *
 * Layouts (row-major): x [m,k], W [n,k] (nn.Linear), bias [n], A [k,r], B [r,n], rowScale [n].
 */

/** One LoRA delta as plain arrays: `A [k,r]`, `B [r,n]`, optional lora bias `[n]`, scale `s`. */
export interface RefDelta {
  readonly a: ArrayLike<number>;
  readonly b: ArrayLike<number>;
  readonly r: number;
  readonly scale: number;
  readonly bias?: ArrayLike<number>;
}

/**
 * `y = rowScale ⊙ (x·Wᵀ + Σ sᵢ·(x·Aᵢ)·Bᵢ + Σ sᵢ·biasᵢ) + bias`, all in float64.
 * x [m,k], W [n,k], bias [n], Aᵢ [k,r], Bᵢ [r,n], rowScale [n] → y [m,n].
 */
export function refLinear(
  x: ArrayLike<number>,
  m: number,
  k: number,
  w: ArrayLike<number>,
  n: number,
  bias: ArrayLike<number> | undefined,
  deltas: readonly RefDelta[] = [],
  rowScale?: ArrayLike<number>,
): Float64Array {
  const y = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let p = 0; p < k; p++) acc += x[i * k + p] * w[j * k + p];
      y[i * n + j] = acc;
    }
  }
  for (const d of deltas) {
    const t = refMatmul(x, m, k, d.a, d.r); // t = x·A  [m,r]
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let acc = 0;
        for (let q = 0; q < d.r; q++) acc += t[i * d.r + q] * d.b[q * n + j];
        y[i * n + j] += d.scale * (acc + (d.bias ? d.bias[j] : 0));
      }
    }
  }
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let v = y[i * n + j];
      if (rowScale) v *= rowScale[j];
      if (bias) v += bias[j];
      y[i * n + j] = v;
    }
  }
  return y;
}

/** `c = a·b`, a [m,k], b [k,n] → c [m,n] in float64. */
export function refMatmul(a: ArrayLike<number>, m: number, k: number, b: ArrayLike<number>, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let p = 0; p < k; p++) acc += a[i * k + p] * b[p * n + j];
      c[i * n + j] = acc;
    }
  }
  return c;
}

/**
 * MLX affine dequantisation: `W[i,j] = scales[i,g]·q[i,j] + biases[i,g]`, g = ⌊j/groupSize⌋.
 * `wq [n, k·bits/32] u32`: element j of a row sits in word ⌊j/(32/bits)⌋ at bit (j mod (32/bits))·bits.
 * Returns W [n,k] in float64.
 */
export function refDequantize(
  wq: ArrayLike<number>,
  scales: ArrayLike<number>,
  biases: ArrayLike<number>,
  n: number,
  k: number,
  bits: number,
  groupSize: number,
): Float64Array {
  const perWord = 32 / bits;
  const wordsPerRow = k / perWord;
  const groups = k / groupSize;
  const mask = 2 ** bits - 1;
  const w = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < k; j++) {
      const word = wq[i * wordsPerRow + Math.floor(j / perWord)] >>> 0;
      const q = Math.floor(word / 2 ** ((j % perWord) * bits)) & mask;
      const g = Math.floor(j / groupSize);
      w[i * k + j] = scales[i * groups + g] * q + biases[i * groups + g];
    }
  }
  return w;
}

/** `y = E[ids] + Σ sᵢ·A_e[ids]·B_e`; E [vocab,dim], A_e [vocab,r], B_e [r,dim] → y [m,dim] in float64. */
export function refEmbedding(
  ids: ArrayLike<number>,
  table: ArrayLike<number>,
  dim: number,
  deltas: readonly RefDelta[] = [],
): Float64Array {
  const m = ids.length;
  const y = new Float64Array(m * dim);
  for (let i = 0; i < m; i++) {
    const id = ids[i];
    for (let j = 0; j < dim; j++) y[i * dim + j] = table[id * dim + j];
    for (const d of deltas) {
      for (let j = 0; j < dim; j++) {
        let acc = 0;
        for (let q = 0; q < d.r; q++) acc += d.a[id * d.r + q] * d.b[q * dim + j];
        y[i * dim + j] += d.scale * acc;
      }
    }
  }
  return y;
}

/** One row's route as plain arrays: passes of deltas, each with an optional DoRA gain (see `Route`). */
export interface RefPass {
  readonly deltas: readonly RefDelta[];
  readonly rowScale?: ArrayLike<number>;
}

/**
 * One row of a routed linear in float64: `y = x·Wᵀ`, then each pass `y += Σ s·((x·A)·B + bias)` and, for a DoRA
 * pass, `y ⊙= g`; then `+ bias`. A single pass is `refLinear` on that row, operation for operation.
 * x [k] (at `xOff`), W [n,k] → y [n] written at `yOff`.
 */
export function refLinearRow(
  x: ArrayLike<number>, xOff: number, k: number, w: ArrayLike<number>, n: number, bias: ArrayLike<number> | undefined,
  passes: readonly RefPass[], y: Float64Array, yOff: number,
): void {
  for (let j = 0; j < n; j++) {
    let acc = 0;
    for (let p = 0; p < k; p++) acc += x[xOff + p] * w[j * k + p];
    y[yOff + j] = acc;
  }
  for (const pass of passes) {
    for (const d of pass.deltas) {
      const t = new Float64Array(d.r);
      for (let q = 0; q < d.r; q++) {
        let acc = 0;
        for (let p = 0; p < k; p++) acc += x[xOff + p] * d.a[p * d.r + q];
        t[q] = acc;
      }
      for (let j = 0; j < n; j++) {
        let acc = 0;
        for (let q = 0; q < d.r; q++) acc += t[q] * d.b[q * n + j];
        y[yOff + j] += d.scale * (acc + (d.bias ? d.bias[j] : 0));
      }
    }
    if (pass.rowScale) for (let j = 0; j < n; j++) y[yOff + j] *= pass.rowScale[j];
  }
  if (bias) for (let j = 0; j < n; j++) y[yOff + j] += bias[j];
}

function refDelta(d: LoRADelta): RefDelta {
  return {
    a: tensorToF64(d.a),
    b: tensorToF64(d.b),
    r: d.a.shape[d.a.shape.length - 1],
    scale: d.scale,
    bias: d.bias ? tensorToF64(d.bias) : undefined,
  };
}

/** x [..., k] → m = size/k; the output keeps x's leading dims and ends in n. */
function rowsOf(x: Tensor, k: number, where: string): number {
  const xk = x.shape[x.shape.length - 1];
  if (xk !== k) throw new BackendError('shape_mismatch', 'input features do not match the weight', { expected: k, got: xk, where });
  return x.size / k;
}

/** A route has one entry per row and terms that fit the layer: checked before any work. */
export function checkRoute(route: Route, m: number, k: number, n: number, where: string): void {
  if (route.length !== m) throw new BackendError('shape_mismatch', 'the route must have one entry per row', { expected: m, got: route.length, where });
  const seen = new Set<readonly unknown[]>();
  for (let i = 0; i < route.length; i++) {
    if (seen.has(route[i])) continue;
    seen.add(route[i]);
    for (const t of route[i]) {
      const r = t.a.shape[1];
      const fits = t.a.ndim === 2 && t.a.shape[0] === k && t.b.ndim === 2 && t.b.shape[0] === r && t.b.shape[1] === n &&
        (!t.bias || t.bias.size === n) && (!t.gain || t.gain.size === n);
      if (!fits) {
        throw new BackendError('shape_mismatch', 'a route term does not fit the layer', {
          expected: `A [${k}, r], B [r, ${n}], bias/gain [${n}]`,
          got: `A [${t.a.shape}], B [${t.b.shape}]${t.bias ? `, bias [${t.bias.shape}]` : ''}${t.gain ? `, gain [${t.gain.shape}]` : ''}`,
          where: `${where} › route[${i}]`,
        });
      }
    }
  }
}

function outShape(x: Tensor, n: number): number[] {
  return [...x.shape.slice(0, -1), n];
}

/** The float64 reference Backend. Outputs are f32 CPU tensors; inputs may live on cpu or wasm. */
export class JsBackend implements Backend {
  readonly name = 'js' as const;

  /** CPU tensors stay as they are (any dtype is read through float64), so a bf16 W is always kept. */
  upload(t: Tensor, _opts?: UploadOptions): Tensor {
    return t.device === 'cpu' ? t : t.toCpu();
  }

  linear(x: Tensor, w: Tensor, bias: Tensor | undefined, deltas: readonly LoRADelta[], rowScale?: Tensor): Tensor {
    const [n, k] = w.shape;
    const m = rowsOf(x, k, 'JsBackend.linear');
    const y = refLinear(
      tensorToF64(x),
      m,
      k,
      tensorToF64(w),
      n,
      bias && tensorToF64(bias),
      deltas.map(refDelta),
      rowScale && tensorToF64(rowScale),
    );
    return Tensor.from(Float32Array.from(y), outShape(x, n), 'f32');
  }

  quantizedLinear(x: Tensor, q: QuantizedWeight, bias: Tensor | undefined, deltas: readonly LoRADelta[], rowScale?: Tensor): Tensor {
    const m = rowsOf(x, q.k, 'JsBackend.quantizedLinear');
    const w = refDequantize(q.w.data as Uint32Array, tensorToF64(q.scales), tensorToF64(q.biases), q.n, q.k, q.bits, q.groupSize);
    const y = refLinear(tensorToF64(x), m, q.k, w, q.n, bias && tensorToF64(bias), deltas.map(refDelta), rowScale && tensorToF64(rowScale));
    return Tensor.from(Float32Array.from(y), outShape(x, q.n), 'f32');
  }

  /** Rows grouped by route; each row computed alone in float64 (`refLinearRow`), so batch invariance is by construction. */
  linearRouted(x: Tensor, w: LinearWeight, bias: Tensor | undefined, route: Route): Tensor {
    const q = isQuantized(w) ? w : undefined;
    const [n, k] = q ? [q.n, q.k] : (w as Tensor).shape;
    const m = rowsOf(x, k, 'JsBackend.linearRouted');
    checkRoute(route, m, k, n, 'JsBackend.linearRouted');
    const groups = routeGroups(route);
    if (groups.length === 1) {
      const passes = routePasses(groups[0].terms);
      if (passes.length <= 1) {
        const [deltas, rs] = [passes[0]?.deltas ?? [], passes[0]?.rowScale];
        return q ? this.quantizedLinear(x, q, bias, deltas, rs) : this.linear(x, w as Tensor, bias, deltas, rs);
      }
    }
    const wf = q ? refDequantize(q.w.data as Uint32Array, tensorToF64(q.scales), tensorToF64(q.biases), n, k, q.bits, q.groupSize) : tensorToF64(w as Tensor);
    const xf = tensorToF64(x);
    const bf = bias && tensorToF64(bias);
    const y = new Float64Array(m * n);
    for (const g of groups) {
      const passes = routePasses(g.terms).map((p) => ({ deltas: p.deltas.map(refDelta), rowScale: p.rowScale && tensorToF64(p.rowScale) }));
      for (const i of g.rows) refLinearRow(xf, i * k, k, wf, n, bf, passes, y, i * n);
    }
    return Tensor.from(Float32Array.from(y), outShape(x, n), 'f32');
  }

  embedding(ids: Tensor, table: Tensor, deltas: readonly LoRADelta[]): Tensor {
    const dim = table.shape[1];
    const y = refEmbedding(ids.data as ArrayLike<number>, tensorToF64(table), dim, deltas.map(refDelta));
    return Tensor.from(Float32Array.from(y), [...ids.shape, dim], 'f32');
  }

  // Transformer ops: float64 loops (cpu-ops.ts), the reference the wasm and WGSL kernels are tested against.
  private readonly ops = new CpuOps((shape) => Tensor.zeros(shape, 'f32'));
  private cpu(t: Tensor): Tensor {
    return t.device === 'cpu' ? t : t.toCpu();
  }
  zeros(shape: readonly number[]): Tensor {
    return this.ops.zeros(shape);
  }
  rmsNorm(x: Tensor, w: Tensor, eps: number): Tensor {
    return this.ops.rmsNorm(this.cpu(x), this.cpu(w), eps);
  }
  layerNorm(x: Tensor, w: Tensor, b: Tensor, eps: number): Tensor {
    return this.ops.layerNorm(this.cpu(x), this.cpu(w), this.cpu(b), eps);
  }
  rope(x: Tensor, cos: Tensor, sin: Tensor, heads: number, headDim: number, start: number): void {
    this.ops.rope(x, cos, sin, heads, headDim, start);
  }
  addInPlace(a: Tensor, b: Tensor): void {
    this.ops.addInPlace(a, this.cpu(b));
  }
  swiglu(g: Tensor, u: Tensor): Tensor {
    return this.ops.swiglu(this.cpu(g), this.cpu(u));
  }
  geluTanh(x: Tensor): Tensor {
    return this.ops.geluTanh(this.cpu(x));
  }
  sliceColumns(x: Tensor, start: number, width: number): Tensor {
    return this.ops.sliceColumns(this.cpu(x), start, width);
  }
  sliceRows(x: Tensor, start: number, count: number): Tensor {
    return this.ops.sliceRows(this.cpu(x), start, count);
  }
  kvWrite(cache: Tensor, src: Tensor, start: number, kvHeads: number, headDim: number): void {
    this.ops.kvWrite(cache, this.cpu(src), start, kvHeads, headDim);
  }
  attention(q: Tensor, kCache: Tensor, vCache: Tensor, start: number, shape: AttentionShape, scale: number): Tensor {
    return this.ops.attention(this.cpu(q), kCache, vCache, start, shape, scale);
  }
}
