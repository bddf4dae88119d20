/// <reference types="@webgpu/types" />
/**
 * `createBackend('auto')`: WebGPU when there is a hardware adapter and the work is large enough, else the
 * fallback (wasm). It always says what it chose: `backend.name`, and `backend.fallbackReason` with one
 * console.warn when it did not take WebGPU. If the device is lost later, it switches to the fallback,
 * re-uploads weights from the host copies it kept at `upload`, and says so the same way.
 */
import { BackendError } from '../../errors.js';
import type { Tensor } from '../../tensor.js';
import { isQuantized, type AttentionShape, type Backend, type BackendName, type LinearWeight, type LoRADelta, type QuantizedWeight, type Route, type RouteTerm, type UploadOptions } from '../backend.js';
import { WebGPUBackend } from './backend.js';
import { requestGpu, type WebGPUOptions } from './device.js';

/**
 * Below this many multiply-adds per forward the wasm backend wins: a WebGPU op costs a submit and a
 * readback (tens of µs to ms), while wasm SIMD does ~1–4 GFLOP/s per core.
 */
export const GPU_MIN_WORK = 1 << 24;

export interface AutoOptions extends WebGPUOptions {
  /** Multiply-adds per forward you expect (e.g. parameters × tokens); small work stays on wasm. */
  work?: number;
  /** Take a software adapter (SwiftShader, WARP, llvmpipe) as if it were a GPU (default false). */
  allowSoftware?: boolean;
  /** Keep host copies of uploaded weights so a lost device can continue on the fallback (default true). */
  recover?: boolean;
}

export interface AutoBackend extends Backend {
  /** Why the fallback runs instead of WebGPU; undefined while WebGPU runs. */
  readonly fallbackReason: string | undefined;
  /** The backend doing the work now. */
  readonly current: Backend;
}

class Auto implements AutoBackend {
  fallbackReason: string | undefined;
  current: Backend;
  private readonly hostCopies = new WeakMap<Tensor, Tensor>();
  private readonly fallbackCopies = new WeakMap<Tensor, Tensor>();

  constructor(
    current: Backend,
    private readonly fallback: Backend,
    private readonly recover: boolean,
  ) {
    this.current = current;
  }

  get name(): BackendName {
    return this.current.name;
  }

  /** Dispatch counters of the WebGPU backend (undefined on the fallback). */
  get stats() {
    return this.current instanceof WebGPUBackend ? this.current.stats : undefined;
  }

  fallBack(reason: string): void {
    if (this.fallbackReason !== undefined) return;
    this.current = this.fallback;
    this.fallbackReason = reason;
    console.warn(`peftjs: using the ${this.fallback.name} backend: ${reason}`);
  }

  upload(t: Tensor, opts?: UploadOptions): Tensor {
    const out = this.run(() => this.current.upload(this.host(t), opts));
    if (this.recover && out !== t && t.device !== 'gpu') this.hostCopies.set(out, t);
    return out;
  }
  linear(x: Tensor, w: Tensor, bias: Tensor | undefined, deltas: readonly LoRADelta[], rowScale?: Tensor): Tensor {
    return this.run(() => this.current.linear(this.host(x), this.host(w), this.opt(bias), this.ds(deltas), this.opt(rowScale)));
  }
  quantizedLinear(x: Tensor, q: QuantizedWeight, bias: Tensor | undefined, deltas: readonly LoRADelta[], rowScale?: Tensor): Tensor {
    return this.run(() =>
      this.current.quantizedLinear(
        this.host(x),
        { ...q, w: this.host(q.w), scales: this.host(q.scales), biases: this.host(q.biases) },
        this.opt(bias),
        this.ds(deltas),
        this.opt(rowScale),
      ),
    );
  }
  linearRouted(x: Tensor, w: LinearWeight, bias: Tensor | undefined, route: Route): Tensor {
    return this.run(() => {
      const routed = this.current.linearRouted;
      if (!routed) throw new BackendError('dtype_unsupported', 'this backend has no routed linear', { where: `${this.current.name}.linearRouted` });
      const q = isQuantized(w) ? { ...w, w: this.host(w.w), scales: this.host(w.scales), biases: this.host(w.biases) } : this.host(w);
      // Map each distinct row list once, so rows that shared a list still share one (the grouping is by identity).
      const lists = new Map<readonly RouteTerm[], readonly RouteTerm[]>();
      const r = route.map((terms) => lists.get(terms) ?? lists.set(terms, this.ds(terms).map((d, i) => ({ ...d, gain: this.opt(terms[i].gain) }))).get(terms)!);
      return routed.call(this.current, this.host(x), q, this.opt(bias), r);
    });
  }
  embedding(ids: Tensor, table: Tensor, deltas: readonly LoRADelta[]): Tensor {
    return this.run(() => this.current.embedding(this.host(ids), this.host(table), this.ds(deltas)));
  }
  zeros(shape: readonly number[]): Tensor {
    return this.run(() => this.current.zeros(shape));
  }
  rmsNorm(x: Tensor, w: Tensor, eps: number): Tensor {
    return this.run(() => this.current.rmsNorm(this.host(x), this.host(w), eps));
  }
  layerNorm(x: Tensor, w: Tensor, b: Tensor, eps: number): Tensor {
    return this.run(() => this.current.layerNorm(this.host(x), this.host(w), this.host(b), eps));
  }
  rope(x: Tensor, cos: Tensor, sin: Tensor, heads: number, headDim: number, start: number): void {
    this.run(() => this.current.rope(this.host(x), this.host(cos), this.host(sin), heads, headDim, start));
  }
  addInPlace(a: Tensor, b: Tensor): void {
    this.run(() => this.current.addInPlace(this.host(a), this.host(b)));
  }
  swiglu(g: Tensor, u: Tensor): Tensor {
    return this.run(() => this.current.swiglu(this.host(g), this.host(u)));
  }
  geluTanh(x: Tensor): Tensor {
    return this.run(() => this.current.geluTanh(this.host(x)));
  }
  sliceColumns(x: Tensor, start: number, width: number): Tensor {
    return this.run(() => this.current.sliceColumns(this.host(x), start, width));
  }
  sliceRows(x: Tensor, start: number, count: number): Tensor {
    return this.run(() => this.current.sliceRows(this.host(x), start, count));
  }
  kvWrite(cache: Tensor, src: Tensor, start: number, kvHeads: number, headDim: number): void {
    this.run(() => this.current.kvWrite(this.host(cache), this.host(src), start, kvHeads, headDim));
  }
  attention(q: Tensor, kCache: Tensor, vCache: Tensor, start: number, shape: AttentionShape, scale: number): Tensor {
    return this.run(() => this.current.attention(this.host(q), this.host(kCache), this.host(vCache), start, shape, scale));
  }
  dispose(): void {
    this.current.dispose?.();
    if (this.current !== this.fallback) this.fallback.dispose?.();
  }

  /** Runs an op; on device loss switches to the fallback and retries once (weights from host copies). */
  private run<T>(op: () => T): T {
    try {
      return op();
    } catch (e) {
      if (!(e instanceof BackendError) || e.code !== 'device_lost' || this.current === this.fallback || !this.recover) throw e;
      this.fallBack(`the WebGPU device was lost (${String(e.got ?? e.message)})`);
      return op();
    }
  }

  /** On the fallback, a GPU tensor is replaced by its host copy (made resident once on the fallback). */
  private host(t: Tensor): Tensor {
    if (this.current !== this.fallback || t.device !== 'gpu') return t;
    const src = this.hostCopies.get(t);
    if (!src) {
      throw new BackendError('device_lost', 'a GPU tensor outlived its device', {
        detail: `${t.toString()} has no host copy; recompute it (weights uploaded through this backend are recovered)`,
      });
    }
    let resident = this.fallbackCopies.get(t);
    if (!resident) this.fallbackCopies.set(t, (resident = this.fallback.upload(src)));
    return resident;
  }
  private opt(t: Tensor | undefined): Tensor | undefined {
    return t && this.host(t);
  }
  private ds(deltas: readonly LoRADelta[]): readonly LoRADelta[] {
    if (this.current !== this.fallback) return deltas;
    return deltas.map((d) => ({ ...d, a: this.host(d.a), b: this.host(d.b), bias: this.opt(d.bias) }));
  }
}

/**
 * Picks WebGPU or the fallback and says which. `makeFallback` builds the wasm backend (initialised up front,
 * so a device loss can switch synchronously).
 */
export async function createAutoBackend(opts: AutoOptions, makeFallback: () => Promise<Backend>): Promise<AutoBackend> {
  const fallback = await makeFallback();
  let reason: string | undefined;
  let gpu: WebGPUBackend | undefined;
  if (opts.work !== undefined && opts.work < GPU_MIN_WORK) {
    reason = `the work (${opts.work} multiply-adds) is below GPU_MIN_WORK (${GPU_MIN_WORK})`;
  } else {
    try {
      const ctx = await requestGpu(opts);
      if (ctx.software && !opts.allowSoftware) {
        reason = `only a software WebGPU adapter is available (${ctx.description}); pass allowSoftware to use it`;
        if (ctx.ownsDevice) ctx.device.destroy();
      } else {
        gpu = new WebGPUBackend(ctx, opts);
      }
    } catch (e) {
      if (!(e instanceof BackendError)) throw e;
      reason = e.message;
    }
  }
  const auto = new Auto(gpu ?? fallback, fallback, opts.recover !== false);
  if (reason) auto.fallBack(reason);
  return auto;
}
