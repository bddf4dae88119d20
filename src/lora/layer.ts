import type { Backend, LoRADelta } from '../backends/backend.js';
import { ApplyError, type ApplyCode } from '../errors.js';
import { FLOAT_DTYPES, toF64 } from '../nn/float.js';
import { NO_DELTAS } from '../nn/linear.js';
import { Module } from '../nn/module.js';
import type { Tensor } from '../tensor.js';

/** Options of `fuse`: keep the original weights for runtime "off" (`keepOriginal`), keep a quantized base dense (`dequantize`). */
export interface FuseOptions {
  /** Off still works after fusing (off = the original weights). Default false: toggling a fused adapter throws. */
  keepOriginal?: boolean;
  /** QLoRA: keep the merged weight dense instead of re-quantising it. Default false. */
  dequantize?: boolean;
}

/** What a layer needs to hold one adapter. Factors are host (CPU) f32 tensors in the internal layout. */
export interface AdapterInit<B extends Module = Module> {
  name: string;
  /** `[k,r]` (embedding: `[vocab,r]`). */
  a?: Tensor;
  /** `[r,n]` (embedding: `[r,dim]`). */
  b?: Tensor;
  /** PEFT `lora_B.bias` `[n]`, scaled with B. */
  bias?: Tensor;
  /** The scale at multiplier 1: α/r, α/√r (rsLoRA) or MLX's scale. Default 1. */
  scale?: number;
  /** DoRA magnitude `m [n]`. */
  magnitude?: Tensor;
  /** A base layer used instead of the original while this adapter is enabled (modules_to_save, bias, trainable tokens). */
  replacement?: B;
}

/** The delta objects the backend reads; `scale` is mutated in place so a scale change allocates nothing. */
interface LiveDelta {
  a: Tensor;
  b: Tensor;
  bias?: Tensor;
  scale: number;
}

/** One named adapter on one layer. */
export class LayerAdapter<B extends Module = Module> {
  readonly name: string;
  /** Host (CPU) tensors for the fuse and DoRA maths; the backend copies are in `delta`. */
  readonly host: { readonly a?: Tensor; readonly b?: Tensor; readonly bias?: Tensor; readonly magnitude?: Tensor };
  /** The scale at multiplier 1 (α/r). */
  readonly baseScale: number;
  readonly replacement?: B;
  /** What the backend receives while this adapter is active (absent for a replacement-only adapter). */
  readonly delta?: LoRADelta;
  enabled = true;
  /** Set while merged into the layer's base weights. */
  fused?: Required<FuseOptions>;
  #multiplier = 1;

  constructor(init: AdapterInit<B>, upload: (t: Tensor) => Tensor) {
    this.name = init.name;
    this.host = { a: init.a, b: init.b, bias: init.bias, magnitude: init.magnitude };
    this.baseScale = init.scale ?? 1;
    if (init.replacement) this.replacement = init.replacement;
    if (init.a && init.b) {
      const d: LiveDelta = { a: upload(init.a), b: upload(init.b), scale: this.baseScale };
      if (init.bias) d.bias = upload(init.bias);
      this.delta = d;
    }
  }

  get rank(): number {
    return this.host.a?.shape[1] ?? 0;
  }
  /** The runtime multiplier k (PEFT `set_scale`). */
  get multiplier(): number {
    return this.#multiplier;
  }
  /** The effective scale k·α/r. */
  get scale(): number {
    return this.#multiplier * this.baseScale;
  }
  /** @internal use `layer.setScale` so the layer can react (DoRA). */
  setMultiplier(k: number): void {
    this.#multiplier = k;
    if (this.delta) (this.delta as LiveDelta).scale = k * this.baseScale;
  }
}

/**
 * A layer wrapping a base layer with a list of named adapters (the seed's LoRALayer protocol).
 * `loraEnabled = false` makes its forward exactly the base layer's forward (same backend call, empty deltas).
 */
export interface LoRALayer extends Module {
  loraEnabled: boolean;
  readonly adapters: readonly LayerAdapter[];
  /** The module object that was wrapped; `unload` puts it back. */
  readonly original: Module;
  /** The base layer computing now: the original, a replacement, or a merged copy. */
  readonly base: Module;
  /** The base type with every enabled adapter merged in (a new module; this layer is unchanged). */
  fused(opts?: FuseOptions): Module;
  /** The original base layer. */
  reverted(): Module;
  setAdapterEnabled(name: string, on: boolean): void;
  setScale(k: number, adapter?: string): void;
}

export function isLoRALayer(m: unknown): m is LoRAModule {
  return m instanceof LoRAModule;
}

/** The one `fused` error: toggling or rescaling an adapter merged without `keepOriginal`. */
export function fusedError(where: string | undefined, name: string): ApplyError {
  return new ApplyError('fused', 'cannot toggle or rescale a fused adapter', {
    expected: 'unfuse() first, or fuse({ keepOriginal: true })',
    got: `adapter "${name}" fused`,
    ...(where ? { where } : {}),
  });
}

/** `s·A·B` in float64 (`A [rows,r]`, `B [r,cols]`) added into `out [rows,cols]`, or its transpose with `transposed`. */
export function addScaledProduct(out: Float64Array, ad: LayerAdapter, transposed: boolean): void {
  const { a, b } = ad.host;
  if (!a || !b) return;
  const [rows, r] = a.shape;
  const cols = b.shape[1];
  const A = toF64(a);
  const B = toF64(b);
  const s = ad.scale;
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < cols; j++) {
      let acc = 0;
      for (let t = 0; t < r; t++) acc += A[i * r + t] * B[t * cols + j];
      out[transposed ? j * rows + i : i * cols + j] += s * acc;
    }
}

/** `Σ s·lora_bias` over adapters that carry one, or undefined. */
export function loraBiasF64(adapters: readonly LayerAdapter[], n: number): Float64Array | undefined {
  let out: Float64Array | undefined;
  for (const ad of adapters) {
    if (!ad.host.bias) continue;
    out ??= new Float64Array(n);
    const b = toF64(ad.host.bias);
    for (let i = 0; i < n; i++) out[i] += ad.scale * b[i];
  }
  return out;
}

/**
 * The shared machinery of every LoRA layer: the adapter list, the cached delta arrays, the toggle, fuse state.
 * Subclasses add `forward` (one backend call) and `merge` (their weight formula).
 */
export abstract class LoRAModule<B extends Module = Module> extends Module implements LoRALayer {
  /** Bumped whenever an adapter is added to or removed from any layer (invalidates cached layer lists). */
  static adapterVersion = 0;
  readonly original: B;
  readonly adapters: LayerAdapter<B>[] = [];
  /** Base layer and delta list passed to the backend now; swapped (not rebuilt) by the toggle. */
  protected base_: B;
  protected deltas: readonly LoRADelta[] = NO_DELTAS;
  /** DoRA's m/‖W + s·A·B‖ while on; undefined otherwise. */
  protected rowScale?: Tensor;
  /** The row scale the subclass wants while its deltas are active (DoRA); undefined for plain LoRA. */
  protected gain?: Tensor;
  readonly #active: LoRADelta[] = [];
  #onBase: B;

  /** One backend call: x [m, in] → y [m, out] (an embedding: ids [m] → rows [m, dim]). Declared here so an
   * `AppliedModule.layer` runs without a cast. */
  abstract forward(x: Tensor): Tensor;
  #enabled = true;
  /** Merged bases by the bitmask of enabled fused/replacing adapters; cleared when the fused set changes. */
  readonly #merged = new Map<number, B>();
  /** Where this layer sits, for error messages (set by LoRAContainer.apply). */
  path = '';

  protected constructor(original: B) {
    super();
    this.original = original;
    this.base_ = this.#onBase = original;
  }

  /** The base layer computing now. */
  get base(): B {
    return this.base_;
  }

  /** The delta array the backend receives: always one of two cached arrays (the empty one when off). */
  get activeDeltas(): readonly LoRADelta[] {
    return this.deltas;
  }

  /** Rows of A and columns of B this layer takes: `[k, n]` for a projection, `[vocab, dim]` for an embedding. */
  protected abstract get factorDims(): readonly [number, number];

  /** A [in,r], B [r,out], bias and magnitude [out], float dtypes: checked before anything is uploaded or changed. */
  private checkFactors(init: AdapterInit<B>): void {
    const [inF, outF] = this.factorDims;
    const where = `${this.path || this.constructor.name} › adapter ${init.name}`;
    const fail = (code: ApplyCode, what: string, expected: unknown, got: unknown) => {
      throw new ApplyError(code, what, { where, expected, got });
    };
    const { a, b } = init;
    if (!a !== !b) fail('rank_mismatch', 'an adapter needs both factors or neither', 'A and B', a ? 'A only' : 'B only');
    for (const [name, t] of [['A', a], ['B', b], ['bias', init.bias], ['magnitude', init.magnitude]] as const) {
      if (t && !FLOAT_DTYPES.includes(t.dtype)) fail('dtype_mismatch', `${name} must be a float tensor`, 'f32, f16, bf16 or f64', t.dtype);
    }
    if (a && b) {
      if (a.ndim !== 2 || a.shape[0] !== inF) fail('in_mismatch', 'A does not fit the layer', `[${inF}, r]`, `[${a.shape.join(', ')}]`);
      if (b.ndim !== 2 || b.shape[1] !== outF) fail('out_mismatch', 'B does not fit the layer', `[r, ${outF}]`, `[${b.shape.join(', ')}]`);
      if (a.shape[1] !== b.shape[0]) fail('rank_mismatch', 'A and B disagree on the rank', `B [${a.shape[1]}, ${outF}]`, `[${b.shape.join(', ')}]`);
    }
    for (const [name, t] of [['bias', init.bias], ['magnitude', init.magnitude]] as const) {
      if (t && (t.ndim !== 1 || t.shape[0] !== outF)) fail('out_mismatch', `${name} does not fit the layer`, `[${outF}]`, `[${t.shape.join(', ')}]`);
    }
  }

  /** The backend this layer runs on (its base layer's). */
  abstract get backend(): Backend;

  /** Merges `adapters` into `start` (their formula); returns a new base layer. */
  protected abstract merge(start: B, adapters: readonly LayerAdapter<B>[], opts: FuseOptions): B;

  /** Called after an adapter is added, removed or rescaled (DoRA refreshes its norm here). */
  protected changed(): void {}

  get loraEnabled(): boolean {
    return this.#enabled;
  }

  /** O(1) and allocation-free: swaps between two cached (base, deltas) pairs. */
  set loraEnabled(on: boolean) {
    if (on === this.#enabled) return;
    const locked = this.adapters.find((ad) => ad.fused && !ad.fused.keepOriginal);
    if (locked) throw fusedError(this.path, locked.name);
    this.#enabled = on;
    this.#swap();
  }

  #swap(): void {
    const on = this.#enabled;
    this.base_ = on ? this.#onBase : this.original;
    this.deltas = on && this.#active.length > 0 ? this.#active : NO_DELTAS;
    this.rowScale = this.deltas.length > 0 ? this.gain : undefined;
  }

  /** Rebuilds the active list in place (no new array) and picks the base for "on". */
  protected rebuild(): void {
    this.#active.length = 0;
    let key = 0;
    for (let i = 0; i < this.adapters.length; i++) {
      const ad = this.adapters[i];
      if (!ad.enabled) continue;
      if (ad.delta && !ad.fused) this.#active.push(ad.delta);
      if (ad.fused || ad.replacement) key |= 1 << i;
    }
    let onBase = this.#merged.get(key);
    if (!onBase) {
      let start = this.original;
      for (const ad of this.adapters) if (ad.enabled && ad.replacement) start = ad.replacement;
      const fused = this.adapters.filter((ad) => ad.enabled && ad.fused);
      onBase = fused.length ? this.merge(start, fused, fused[0].fused!) : start;
      this.#merged.set(key, onBase);
    }
    this.#onBase = onBase;
    this.#swap();
  }

  adapter(name: string): LayerAdapter<B> | undefined {
    return this.adapters.find((ad) => ad.name === name);
  }

  #need(name: string): LayerAdapter<B> {
    const ad = this.adapter(name);
    if (!ad) throw new ApplyError('not_applied', 'no such adapter on this layer', { expected: this.adapters.map((a) => a.name), got: name, where: this.path });
    return ad;
  }

  /** Adds a named adapter; its tensors are uploaded to this layer's backend once, here. */
  addAdapter(init: AdapterInit<B>, upload: (t: Tensor) => Tensor = (t) => this.backend.upload(t)): LayerAdapter<B> {
    if (this.adapter(init.name)) throw new ApplyError('already_applied', 'adapter already on this layer', { got: init.name, where: this.path });
    this.checkFactors(init);
    const ad = new LayerAdapter(init, upload);
    this.adapters.push(ad);
    LoRAModule.adapterVersion++;
    this.#merged.clear();
    this.changed();
    this.rebuild();
    return ad;
  }

  /** Removes a named adapter (fused or not); the base goes back to what the others make it. */
  removeAdapter(name: string): void {
    this.adapters.splice(this.adapters.indexOf(this.#need(name)), 1);
    LoRAModule.adapterVersion++;
    this.#merged.clear();
    this.changed();
    this.rebuild();
  }

  /** Enables or disables one adapter on this layer (the layer-wide switch is `loraEnabled`). */
  setAdapterEnabled(name: string, on: boolean): void {
    const ad = this.#need(name);
    if (ad.enabled === on) return;
    if (ad.fused && !ad.fused.keepOriginal) throw fusedError(this.path, name);
    ad.enabled = on;
    this.rebuild();
  }

  /** Sets the runtime multiplier k of one adapter (or all): effective scale k·α/r. No reallocation for LoRA. */
  setScale(k: number, adapter?: string): void {
    const targets = adapter === undefined ? this.adapters : [this.#need(adapter)];
    const fused = targets.find((ad) => ad.fused);
    if (fused) throw fusedError(this.path, fused.name);
    for (const ad of targets) ad.setMultiplier(k);
    this.changed();
    this.#swap();
  }

  /** Merges one adapter into the base weights: the layer then computes with the merged copy. */
  fuseAdapter(name: string, opts: FuseOptions = {}): void {
    const ad = this.#need(name);
    ad.fused = { keepOriginal: opts.keepOriginal ?? false, dequantize: opts.dequantize ?? false };
    ad.enabled = true;
    this.#merged.clear();
    this.rebuild();
  }

  /** Undoes `fuseAdapter`: the original weights come back (kept, not subtracted). */
  unfuseAdapter(name: string): void {
    const ad = this.#need(name);
    if (!ad.fused) throw new ApplyError('not_fused', 'adapter is not fused', { got: name, where: this.path });
    delete ad.fused;
    this.#merged.clear();
    this.rebuild();
  }

  fused(opts: FuseOptions = {}): B {
    if (!this.#enabled) return this.original;
    let start = this.original;
    for (const ad of this.adapters) if (ad.enabled && ad.replacement) start = ad.replacement;
    const on = this.adapters.filter((ad) => ad.enabled && ad.host.a);
    return on.length ? this.merge(start, on, opts) : start;
  }

  reverted(): B {
    return this.original;
  }

  /** `r=16, scale=2` for one adapter, `adapters=[a r=4 scale=2, b r=2 scale=1]` for several. */
  protected describeAdapters(): string {
    const one = (ad: LayerAdapter) => (ad.delta ? `r=${ad.rank}, scale=${+ad.scale.toPrecision(6)}` : 'replacement');
    if (this.adapters.length === 1) return one(this.adapters[0]);
    return `adapters=[${this.adapters.map((ad) => `${ad.name} ${one(ad).replace(', ', ' ')}${ad.enabled ? '' : ' off'}`).join(', ')}]`;
  }

  protected state(): string {
    return (this.#enabled ? 'on' : 'off') + (this.adapters.some((ad) => ad.fused) ? ', fused' : '');
  }
}
