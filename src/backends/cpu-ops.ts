import { BackendError } from '../errors.js';
import type { Tensor } from '../tensor.js';
import type { AttentionShape } from './backend.js';

/**
 * The transformer ops of `Backend` as plain loops over f32 views, accumulating in float64 and rounding once
 * per output element: the js backend's implementation (the wasm and WGSL kernels have their own float64
 * references in their tests). `alloc` makes an uninitialised f32 tensor where the backend keeps its tensors; every input must
 * expose `.data` synchronously (cpu or wasm storage). Views are taken after the output is allocated (a wasm
 * allocation may grow memory and detach older views).
 */
export class CpuOps {
  constructor(private readonly alloc: (shape: readonly number[]) => Tensor) {}

  private f32(t: Tensor, what: string): Float32Array {
    if (t.dtype !== 'f32') throw new BackendError('dtype_unsupported', `${what} must be f32`, { expected: 'f32', got: t.dtype, where: `CpuOps.${what}` });
    return t.data as Float32Array;
  }

  private rows(x: Tensor, d: number, what: string): number {
    const last = x.shape[x.shape.length - 1];
    if (last !== d) throw new BackendError('shape_mismatch', `${what}: row width does not match`, { expected: d, got: last, where: `CpuOps.${what}` });
    return x.size / d;
  }

  zeros(shape: readonly number[]): Tensor {
    const t = this.alloc(shape);
    (t.data as Float32Array).fill(0);
    return t;
  }

  rmsNorm(x: Tensor, w: Tensor, eps: number): Tensor {
    const d = w.size;
    const m = this.rows(x, d, 'rmsNorm');
    const y = this.alloc(x.shape);
    const [xv, wv, yv] = [this.f32(x, 'rmsNorm'), this.f32(w, 'rmsNorm'), this.f32(y, 'rmsNorm')];
    for (let i = 0; i < m; i++) {
      let ss = 0;
      for (let j = 0; j < d; j++) ss += xv[i * d + j] * xv[i * d + j];
      const inv = 1 / Math.sqrt(ss / d + eps);
      for (let j = 0; j < d; j++) yv[i * d + j] = xv[i * d + j] * inv * wv[j];
    }
    return y;
  }

  layerNorm(x: Tensor, w: Tensor, b: Tensor, eps: number): Tensor {
    const d = w.size;
    const m = this.rows(x, d, 'layerNorm');
    const y = this.alloc(x.shape);
    const [xv, wv, bv, yv] = [this.f32(x, 'layerNorm'), this.f32(w, 'layerNorm'), this.f32(b, 'layerNorm'), this.f32(y, 'layerNorm')];
    for (let i = 0; i < m; i++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += xv[i * d + j];
      const mu = s / d;
      let v = 0;
      for (let j = 0; j < d; j++) v += (xv[i * d + j] - mu) ** 2;
      const inv = 1 / Math.sqrt(v / d + eps);
      for (let j = 0; j < d; j++) yv[i * d + j] = (xv[i * d + j] - mu) * inv * wv[j] + bv[j];
    }
    return y;
  }

  rope(x: Tensor, cos: Tensor, sin: Tensor, heads: number, headDim: number, start: number): void {
    const width = heads * headDim;
    const m = this.rows(x, width, 'rope');
    const half = headDim / 2;
    if (cos.shape[1] !== half || (start + m) > cos.shape[0]) {
      throw new BackendError('shape_mismatch', 'rope: the cos/sin tables do not cover these positions', { expected: `[≥ ${start + m}, ${half}]`, got: `[${cos.shape.join(', ')}]`, where: 'CpuOps.rope' });
    }
    const [xv, cv, sv] = [this.f32(x, 'rope'), this.f32(cos, 'rope'), this.f32(sin, 'rope')];
    for (let i = 0; i < m; i++) {
      const row = (start + i) * half;
      for (let h = 0; h < heads; h++) {
        const o = i * width + h * headDim;
        for (let j = 0; j < half; j++) {
          const x1 = xv[o + j];
          const x2 = xv[o + j + half];
          const c = cv[row + j];
          const s = sv[row + j];
          xv[o + j] = x1 * c - x2 * s;
          xv[o + j + half] = x2 * c + x1 * s;
        }
      }
    }
  }

  addInPlace(a: Tensor, b: Tensor): void {
    if (a.size !== b.size) throw new BackendError('shape_mismatch', 'addInPlace: sizes differ', { expected: a.size, got: b.size, where: 'CpuOps.addInPlace' });
    const [av, bv] = [this.f32(a, 'addInPlace'), this.f32(b, 'addInPlace')];
    for (let i = 0; i < av.length; i++) av[i] += bv[i];
  }

  swiglu(g: Tensor, u: Tensor): Tensor {
    if (g.size !== u.size) throw new BackendError('shape_mismatch', 'swiglu: gate and up differ in size', { expected: g.size, got: u.size, where: 'CpuOps.swiglu' });
    const y = this.alloc(g.shape);
    const [gv, uv, yv] = [this.f32(g, 'swiglu'), this.f32(u, 'swiglu'), this.f32(y, 'swiglu')];
    for (let i = 0; i < gv.length; i++) yv[i] = (gv[i] / (1 + Math.exp(-gv[i]))) * uv[i];
    return y;
  }

  geluTanh(x: Tensor): Tensor {
    const y = this.alloc(x.shape);
    const [xv, yv] = [this.f32(x, 'geluTanh'), this.f32(y, 'geluTanh')];
    const c = Math.sqrt(2 / Math.PI);
    for (let i = 0; i < xv.length; i++) {
      const v = xv[i];
      yv[i] = 0.5 * v * (1 + Math.tanh(c * (v + 0.044715 * v * v * v)));
    }
    return y;
  }

  sliceColumns(x: Tensor, start: number, width: number): Tensor {
    const c = x.shape[x.shape.length - 1];
    if (start < 0 || width < 0 || start + width > c) throw new BackendError('shape_mismatch', 'sliceColumns out of range', { expected: `start + width ≤ ${c}`, got: { start, width }, where: 'CpuOps.sliceColumns' });
    const m = x.size / c;
    const y = this.alloc([...x.shape.slice(0, -1), width]);
    const [xv, yv] = [this.f32(x, 'sliceColumns'), this.f32(y, 'sliceColumns')];
    for (let i = 0; i < m; i++) yv.set(xv.subarray(i * c + start, i * c + start + width), i * width);
    return y;
  }

  sliceRows(x: Tensor, start: number, count: number): Tensor {
    const c = x.shape[x.shape.length - 1];
    const m = x.size / c;
    if (start < 0 || count < 0 || start + count > m) throw new BackendError('shape_mismatch', 'sliceRows out of range', { expected: `start + count ≤ ${m}`, got: { start, count }, where: 'CpuOps.sliceRows' });
    const y = this.alloc([count, c]);
    const [xv, yv] = [this.f32(x, 'sliceRows'), this.f32(y, 'sliceRows')];
    yv.set(xv.subarray(start * c, (start + count) * c));
    return y;
  }

  kvWrite(cache: Tensor, src: Tensor, start: number, kvHeads: number, headDim: number): void {
    const width = kvHeads * headDim;
    const m = this.rows(src, width, 'kvWrite');
    const maxLen = cache.size / width;
    if (start < 0 || start + m > maxLen) throw new BackendError('shape_mismatch', 'kvWrite past the end of the cache', { expected: `start + m ≤ ${maxLen}`, got: start + m, where: 'CpuOps.kvWrite' });
    const [cv, sv] = [this.f32(cache, 'kvWrite'), this.f32(src, 'kvWrite')];
    for (let i = 0; i < m; i++)
      for (let g = 0; g < kvHeads; g++) cv.set(sv.subarray(i * width + g * headDim, i * width + (g + 1) * headDim), (g * maxLen + start + i) * headDim);
  }

  attention(q: Tensor, kCache: Tensor, vCache: Tensor, start: number, shape: AttentionShape, scale: number): Tensor {
    const { heads, kvHeads, headDim: hd } = shape;
    const width = heads * hd;
    const m = this.rows(q, width, 'attention');
    const maxLen = kCache.size / (kvHeads * hd);
    if (heads % kvHeads !== 0 || start + m > maxLen) {
      throw new BackendError('shape_mismatch', 'attention: bad head counts or positions past the cache', { expected: `heads % kvHeads = 0, start + m ≤ ${maxLen}`, got: { heads, kvHeads, end: start + m }, where: 'CpuOps.attention' });
    }
    const group = heads / kvHeads;
    const y = this.alloc(q.shape);
    const [qv, kv, vv, yv] = [this.f32(q, 'attention'), this.f32(kCache, 'attention'), this.f32(vCache, 'attention'), this.f32(y, 'attention')];
    const scores = new Float64Array(start + m);
    const acc = new Float64Array(hd);
    for (let i = 0; i < m; i++) {
      const p = start + i;
      for (let h = 0; h < heads; h++) {
        const g = Math.floor(h / group);
        const qo = i * width + h * hd;
        let max = -Infinity;
        for (let j = 0; j <= p; j++) {
          const ko = (g * maxLen + j) * hd;
          let s = 0;
          for (let t = 0; t < hd; t++) s += qv[qo + t] * kv[ko + t];
          scores[j] = s * scale;
          if (scores[j] > max) max = scores[j];
        }
        let sum = 0;
        acc.fill(0);
        for (let j = 0; j <= p; j++) {
          const e = Math.exp(scores[j] - max);
          sum += e;
          const vo = (g * maxLen + j) * hd;
          for (let t = 0; t < hd; t++) acc[t] += e * vv[vo + t];
        }
        for (let t = 0; t < hd; t++) yv[qo + t] = acc[t] / sum;
      }
    }
    return y;
  }
}
