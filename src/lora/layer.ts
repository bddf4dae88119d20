import { type Backend, type LoRADelta, type Route, type RouteTerm } from '../backends/backend.js';
import { ApplyError, type ApplyCode } from '../errors.js';
import { FLOAT_DTYPES, toF64 } from '../nn/float.js';
import { NO_DELTAS } from '../nn/linear.js';
import { Module, disposeModule } from '../nn/module.js';
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

/**
 * The route term the backend reads for one adapter (also its legacy delta); `scale` and `gain` are mutated in
 * place, so a scale change allocates nothing and every cached route stays valid.
 */
interface LiveTerm {
  a: Tensor;
  b: Tensor;
  bias?: Tensor;
  scale: number;
  gain?: Tensor;
}

/** How an adapter's delta enters the output: LoRA adds `s·(x·A)·B`; DoRA rescales by `m/‖W + s·(A·B)ᵀ‖` (see `Route`). */
export type AdapterVariant = 'lora' | 'dora';

/** What a row of a per-request route names: an adapter, `null` for the base, or adapters to stack (in order). */
export type RowAdapters = string | null | readonly string[];

/** Options of a LoRA layer's `forward`. */
export interface ForwardOptions {
  /**
   * Per-request adapters: `adapters[i]` applies to row i of x (one entry per row). Explicit, so it ignores the
   * layer's toggles (`loraEnabled`, `enabled`); scales are each adapter's current scale. Unknown names are a
   * typed error before any work.
   */
  adapters?: readonly RowAdapters[];
}

/** One named adapter on one layer: an entry of the layer's bank (factors, scale, variant), data for routes. */
export class LayerAdapter<B extends Module = Module> {
  readonly name: string;
  /** Host tensors for the fuse and DoRA maths (as given; any float dtype); the backend copies are in `delta`. */
  readonly host: { readonly a?: Tensor; readonly b?: Tensor; readonly bias?: Tensor; readonly magnitude?: Tensor };
  /** The scale at multiplier 1 (α/r). */
  readonly baseScale: number;
  readonly variant: AdapterVariant;
  readonly replacement?: B;
  /** What the backend receives while this adapter is active (absent for a replacement-only adapter). */
  readonly delta?: LoRADelta;
  enabled = true;
  /** Set while merged into the layer's base weights. */
  fused?: Required<FuseOptions>;
  #multiplier = 1;
  /** Backend tensors this adapter uploaded itself (freed by `dispose`); shared uploads belong to their container. */
  readonly #owned: Tensor[] = [];

  constructor(init: AdapterInit<B>, upload: (t: Tensor) => Tensor, owns = false) {
    this.name = init.name;
    this.host = { a: init.a, b: init.b, bias: init.bias, magnitude: init.magnitude };
    this.baseScale = init.scale ?? 1;
    this.variant = init.magnitude ? 'dora' : 'lora';
    if (init.replacement) this.replacement = init.replacement;
    if (init.a && init.b) {
      const up = (t: Tensor) => {
        const u = upload(t);
        if (owns && u !== t) this.#owned.push(u);
        return u;
      };
      const d: LiveTerm = { a: up(init.a), b: up(init.b), scale: this.baseScale };
      if (init.bias) d.bias = up(init.bias);
      this.delta = d;
    }
  }

  /** The route term of this adapter (the same live object as `delta`). */
  get term(): RouteTerm | undefined {
    return this.delta;
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
    if (this.delta) (this.delta as LiveTerm).scale = k * this.baseScale;
  }
  /** DoRA's m/‖W + s·(A·B)ᵀ‖ at the current scale (on the backend), set by the layer; the old one is freed. */
  get gain(): Tensor | undefined {
    return (this.delta as LiveTerm | undefined)?.gain;
  }
  /** @internal */
  setGain(g: Tensor | undefined): void {
    const d = this.delta as LiveTerm | undefined;
    if (!d) return;
    if (d.gain && d.gain !== g) d.gain.dispose();
    d.gain = g;
  }

  /** Frees what this adapter holds on the backend (its own uploads and DoRA gain). Idempotent. */
  dispose(): void {
    this.setGain(undefined);
    for (const t of this.#owned.splice(0)) t.dispose();
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
  /** DoRA's m/‖W + s·A·B‖ while on and the active adapters are one DoRA pass; undefined otherwise. */
  protected rowScale?: Tensor;
  /** The active adapters need the routed op (a DoRA stacked with others: more than one pass). */
  protected multiPass = false;
  /** The same active terms for every row, as a route (built on demand for multi-pass forwards). */
  readonly #active: RouteTerm[] = [];
  /** Route row lists by adapter names (`a`, `a\0b`), shared so equal rows group; cleared when the bank changes. */
  readonly #routeLists = new Map<string, readonly RouteTerm[]>();
  /** Set by `withAdapters`: the route a plain `forward(x)` takes (per-request adapters through an unchanged caller). */
  scopedAdapters?: readonly RowAdapters[];
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

  /** O(1) and allocation-free: swaps between two cached states ("on" worked out when the adapters last changed). */
  set loraEnabled(on: boolean) {
    if (on === this.#enabled) return;
    const locked = this.fusedLock();
    if (locked) throw fusedError(this.path, locked.name);
    this.#enabled = on;
    this.#swap(false);
  }

  /** The adapter (`name`, or any) fused without keeping the original: it cannot be switched off. A loop, no closure. */
  fusedLock(name?: string): LayerAdapter<B> | undefined {
    for (const ad of this.adapters) if (ad.fused && !ad.fused.keepOriginal && (name === undefined || ad.name === name)) return ad;
    return undefined;
  }

  /** "on": what the active adapters need (passes, DoRA row scale), recomputed only when they changed (`recompute`). */
  #onMultiPass = false;
  #onRowScale?: Tensor;
  #swap(recompute = true): void {
    if (recompute) {
      // routePasses' grouping (a DoRA term opens a pass of its own; plain terms share one), counted without building it.
      let passes = 0;
      let scale: Tensor | undefined;
      let lastScaled = false;
      for (const t of this.#active) {
        if (!t.gain && passes > 0 && !lastScaled) continue; // joins the plain pass
        passes++;
        scale = t.gain;
        lastScaled = t.gain !== undefined;
      }
      this.#onMultiPass = passes > 1;
      this.#onRowScale = passes === 1 ? scale : undefined;
    }
    const on = this.#enabled;
    this.base_ = on ? this.#onBase : this.original;
    this.deltas = on && this.#active.length > 0 ? this.#active : NO_DELTAS;
    this.multiPass = on && this.#onMultiPass;
    this.rowScale = on ? this.#onRowScale : undefined;
  }

  /** The gain of the single active DoRA adapter (what `rowScale` is while on), for views such as DoRALinear. */
  protected get gain(): Tensor | undefined {
    return this.adapters.find((ad) => ad.variant === 'dora')?.gain;
  }

  /**
   * The route for `adapters` (one entry per row, `rows` rows): names resolved to this layer's bank terms, all
   * checked before any work. Rows naming the same adapters share one list (one group in the kernels).
   */
  protected routeFor(adapters: readonly RowAdapters[], rows: number, lenient = false): Route {
    const where = this.path || this.constructor.name;
    if (adapters.length !== rows) {
      throw new ApplyError('bad_option', 'per-request adapters need one entry per row', { expected: rows, got: adapters.length, where });
    }
    const fused = this.adapters.find((ad) => ad.fused);
    if (fused) throw new ApplyError('fused', 'per-request adapters need unfused adapters', { expected: 'unfuse() first', got: `adapter "${fused.name}" fused`, where });
    const route: (readonly RouteTerm[])[] = new Array(rows);
    for (let i = 0; i < rows; i++) {
      const names = adapters[i];
      if (names === null || (Array.isArray(names) && names.length === 0)) {
        route[i] = NO_DELTAS;
        continue;
      }
      const key = (lenient ? '~' : '') + (typeof names === 'string' ? names : (names as readonly string[]).join('\0'));
      let list = this.#routeLists.get(key);
      if (!list) {
        const wanted = typeof names === 'string' ? [names] : (names as readonly string[]);
        const terms = (lenient ? wanted.filter((name) => this.adapter(name)) : wanted).map((name) => {
          const ad = this.adapter(name);
          if (!ad) throw new ApplyError('not_applied', 'a route names an adapter this layer does not hold', { expected: this.adapters.map((a) => a.name), got: name, where: `${where} › adapters[${i}]` });
          if (!ad.term) throw new ApplyError('bad_option', 'a route cannot name a replacement-only adapter', { expected: 'an adapter with lora_A/lora_B', got: name, where: `${where} › adapters[${i}]` });
          return ad.term;
        });
        this.#routeLists.set(key, (list = terms.length ? terms : NO_DELTAS));
      }
      route[i] = list;
    }
    return route;
  }

  /** Row count of an input (x [..., k] → m; ids [m] → m). */
  protected rowsOf(x: Tensor): number {
    return x.size / (this.inputWidth || 1);
  }
  /** Features per row of the input: k for a projection, 1 for an embedding's ids. */
  protected abstract get inputWidth(): number;

  /** The per-request route of this call: `opts.adapters`, else a scoped one (`withAdapters`), else none. */
  protected requestedRoute(x: Tensor, opts?: ForwardOptions): Route | undefined {
    if (opts?.adapters) return this.routeFor(opts.adapters, this.rowsOf(x));
    return this.scopedAdapters ? this.routeFor(this.scopedAdapters, this.rowsOf(x), true) : undefined;
  }

  /** The active adapters as a route with one shared list for all `rows` rows (the default forward when multi-pass). */
  protected activeRoute(rows: number): Route {
    return new Array<readonly RouteTerm[]>(rows).fill(this.deltas as readonly RouteTerm[]);
  }

  /** Rebuilds the active list in place (no new array) and picks the base for "on". */
  protected rebuild(): void {
    // Per flip of one adapter (container.enabled): entries overwritten and popped, the map cleared only when used
    // (setting an array's length and Map.clear are runtime calls: a third of the flip's time).
    const active = this.#active;
    if (this.#routeLists.size > 0) this.#routeLists.clear();
    let key = 0;
    let n = 0;
    for (let i = 0; i < this.adapters.length; i++) {
      const ad = this.adapters[i];
      if (!ad.enabled) continue;
      if (ad.term && !ad.fused) {
        if (n < active.length) active[n] = ad.term;
        else active.push(ad.term);
        n++;
      }
      if (ad.fused || ad.replacement) key |= 1 << i;
    }
    while (active.length > n) active.pop();
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
    for (const ad of this.adapters) if (ad.name === name) return ad;
    return undefined;
  }

  #need(name: string): LayerAdapter<B> {
    const ad = this.adapter(name);
    if (!ad) throw new ApplyError('not_applied', 'no such adapter on this layer', { expected: this.adapters.map((a) => a.name), got: name, where: this.path });
    return ad;
  }

  /**
   * Adds a named adapter to the bank; its tensors are uploaded to this layer's backend once, here. With the default
   * upload the layer owns the copies (freed by `removeAdapter` / `dispose`); a caller's `upload` keeps ownership.
   */
  addAdapter(init: AdapterInit<B>, upload?: (t: Tensor) => Tensor): LayerAdapter<B> {
    if (this.#disposed) throw new ApplyError('not_applied', 'the layer was disposed', { got: init.name, where: this.path });
    if (this.adapter(init.name)) throw new ApplyError('already_applied', 'adapter already on this layer', { got: init.name, where: this.path });
    this.checkFactors(init);
    const ad = new LayerAdapter(init, upload ?? ((t) => this.backend.upload(t)), upload === undefined);
    this.adapters.push(ad);
    LoRAModule.adapterVersion++;
    this.#clearMerged();
    this.changed();
    this.rebuild();
    return ad;
  }

  /** Removes a named adapter (fused or not); the base goes back to what the others make it. */
  removeAdapter(name: string): void {
    const ad = this.#need(name);
    this.adapters.splice(this.adapters.indexOf(ad), 1);
    LoRAModule.adapterVersion++;
    this.#clearMerged();
    this.changed();
    this.rebuild();
    ad.dispose();
  }

  #disposed = false;
  /**
   * Frees everything this layer holds on its backend: each adapter's own uploads and DoRA gains, merged copies
   * of the base, and the wrapped original (the layer stands for it in the model). To keep the original, `unload`
   * the adapters instead. Idempotent.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const ad of this.adapters.splice(0)) ad.dispose();
    LoRAModule.adapterVersion++;
    this.#clearMerged();
    this.#active.length = 0;
    this.#routeLists.clear();
    this.base_ = this.#onBase = this.original;
    this.deltas = NO_DELTAS;
    this.rowScale = undefined;
    this.multiPass = false;
    disposeModule(this.original);
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Drops the cached merged bases, freeing the ones this layer built (never the original or a replacement). */
  #clearMerged(): void {
    const keep = new Set<Module>([this.original, ...this.adapters.map((a) => a.replacement).filter((r): r is B => !!r)]);
    for (const m of this.#merged.values()) if (!keep.has(m)) disposeModule(m);
    this.#merged.clear();
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
    this.#clearMerged();
    this.rebuild();
  }

  /** Undoes `fuseAdapter`: the original weights come back (kept, not subtracted). */
  unfuseAdapter(name: string): void {
    const ad = this.#need(name);
    if (!ad.fused) throw new ApplyError('not_fused', 'adapter is not fused', { got: name, where: this.path });
    delete ad.fused;
    this.#clearMerged();
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
