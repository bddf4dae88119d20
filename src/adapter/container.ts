import type { Backend } from '../backends/backend.js';
import { ApplyError, formatMessage, issuesMessage, type ErrorFacts, type Issue, type ApplyCode } from '../errors.js';
import { toFileSet, type AdapterSource } from '../io/fileset.js';
import type { LoadLimits } from '../limits.js';
import { loadMLX } from '../mlx/load.js';
import { saveMLX } from '../mlx/save.js';
import { Conv1D } from '../nn/conv1d.js';
import { Embedding } from '../nn/embedding.js';
import { FLOAT_DTYPES } from '../nn/float.js';
import { Linear, type Projection } from '../nn/linear.js';
import type { Module } from '../nn/module.js';
import { QuantizedLinear } from '../nn/quantized-linear.js';
import { loadAdapter } from './detect.js';
import { loadPEFT, missingAdapterKeys, missingKeysWarning } from '../peft/load.js';
import type { LoadOptions } from './raw.js';
import { savePEFT } from '../peft/save.js';
import type { Tensor } from '../tensor.js';
import { DoRALinear } from '../lora/dora-linear.js';
import { fusedError, isLoRALayer, type AdapterInit, type FuseOptions, type LoRAModule } from '../lora/layer.js';
import { LoRAEmbedding } from '../lora/lora-embedding.js';
import { LoRALinear } from '../lora/lora-linear.js';
import { QDoRALinear } from '../lora/qdora-linear.js';
import { QLoRALinear } from '../lora/qlora-linear.js';
import { buildReport } from './report.js';
import type { AdapterModule, AdapterReplacement, AdapterSpec } from './spec.js';

/** Names of block lists MLX's relative keys are resolved under: `<x>.layers.<n>`, `<x>.h.<n>`, `<x>.block.<n>`. */
const BLOCK_LISTS = ['layers', 'h', 'block'] as const;

export interface ContainerOptions {
  /** The adapter's name on each layer; default the spec's name (`default`). Two stacked adapters need two names. */
  name?: string;
}

/** What every `LoRAContainer` loader takes: the loader's own options (signal, onProgress, fetch, adapterName, limits, checkFinite). */
export type ContainerLoadOptions = ContainerOptions & LoadOptions & { limits?: Partial<LoadLimits> };

/** The source as a FileSet enforcing `opts.limits` (the loaders then reuse it, its budget and caps included). */
async function limitedSource(source: AdapterSource, opts: ContainerLoadOptions): Promise<AdapterSource> {
  return opts.limits ? toFileSet(source, { fetch: opts.fetch, limits: opts.limits }) : source;
}

/** One module the adapter reached. */
export interface AppliedModule {
  /** Path in the model. */
  readonly path: string;
  /** The spec module (or replacement) paths that resolved here (MLX relative keys resolve to many paths). */
  readonly from: readonly string[];
  readonly layer: LoRAModule;
  /** This apply created the wrapper (false when stacked onto an existing LoRA layer). */
  readonly wrapped: boolean;
}

type Base = Projection | Embedding;


interface Plan {
  path: string;
  from: string[];
  module?: AdapterModule;
  replacements: AdapterReplacement[];
}

/**
 * An adapter (the seed's LoRAContainer): what was loaded (`spec`), and its life on one model —
 * `apply` (validate everything, then wrap), `enabled`, `scale`, `fuse`/`unfuse`, `unload`.
 */
export class LoRAContainer {
  readonly spec: AdapterSpec;
  readonly name: string;
  #model?: Module;
  #applied: AppliedModule[] = [];
  #enabled = true;
  #scale = 1;
  #fused?: FuseOptions;
  /** Backend copies of the factors made by `apply` (shared across the layers it reached), freed by `unload`. */
  readonly #uploads: Tensor[] = [];
  /** Warnings of the last `apply` (PEFT's missing adapter keys), shown in `report.warnings`. */
  #applyWarnings: string[] = [];
  /** PEFT warns with `warnings.warn`, shown once per call site: console.warn once per container. */
  #warned = false;

  constructor(spec: AdapterSpec, opts: ContainerOptions = {}) {
    this.spec = spec;
    this.name = opts.name ?? spec.name;
  }

  /** Loads a PEFT adapter folder (adapter_config.json + adapter_model.safetensors/.bin). */
  static async fromPEFT(source: Parameters<typeof loadPEFT>[0], opts: ContainerLoadOptions = {}): Promise<LoRAContainer> {
    return new LoRAContainer(await loadPEFT(await limitedSource(source, opts), opts as never), opts);
  }

  /** Loads an MLX adapter folder (adapter_config.json + adapters.safetensors). */
  static async fromMLX(source: Parameters<typeof loadMLX>[0], opts: ContainerLoadOptions = {}): Promise<LoRAContainer> {
    return new LoRAContainer(await loadMLX(await limitedSource(source, opts), opts as never), opts);
  }

  /** Detects the format (PEFT or MLX) and loads it. */
  static async load(source: Parameters<typeof loadAdapter>[0], opts: ContainerLoadOptions = {}): Promise<LoRAContainer> {
    return new LoRAContainer(await loadAdapter(await limitedSource(source, opts), opts as never), opts);
  }

  /** What was loaded; once applied, also which backend the adapted layers run on. */
  get report(): ReturnType<typeof buildReport> {
    return buildReport(this.spec, { backend: this.backend, warnings: this.#applyWarnings });
  }

  /** The backend name(s) the applied layers run on (`wasm`, `webgpu`, `js`), or undefined before `apply`. */
  get backend(): string | undefined {
    if (!this.#applied.length) return undefined;
    return [...new Set(this.#applied.map((a) => a.layer.backend.name))].join(', ');
  }
  savePEFT(): Record<string, Uint8Array> {
    return savePEFT(this.spec);
  }
  saveMLX(): Record<string, Uint8Array> {
    return saveMLX(this.spec);
  }

  /** What the last `apply` reached (empty once unloaded). */
  get applied(): readonly AppliedModule[] {
    return this.#applied;
  }
  /** The layers holding this adapter. */
  get layers(): readonly LoRAModule[] {
    return this.#applied.map((a) => a.layer);
  }

  get enabled(): boolean {
    return this.#enabled;
  }
  /** Enables or disables this adapter on every layer it reached (other adapters are untouched). */
  set enabled(on: boolean) {
    this.#lockedCheck();
    for (const { layer } of this.#applied) layer.setAdapterEnabled(this.name, on);
    this.#enabled = on;
  }

  /** The runtime multiplier k (PEFT set_scale): effective scale k·α/r on every layer. Default 1. */
  get scale(): number {
    return this.#scale;
  }
  set scale(k: number) {
    if (!Number.isFinite(k)) throw new ApplyError('bad_option', 'scale must be a finite number', { got: k });
    if (this.#fused) this.#lockedCheck(true);
    for (const { layer } of this.#applied) layer.setScale(k, this.name);
    this.#scale = k;
  }

  #lockedCheck(always = false): void {
    if (this.#fused && (always || !this.#fused.keepOriginal))
      throw fusedError(undefined, this.name);
  }

  /**
   * Wraps every module the adapter targets. Everything is checked first (the module exists, is a layer this
   * adapter can wrap, in/out/rank/dtype fit); on any problem the model is left untouched and one ApplyError
   * lists every issue. Returns what matched.
   */
  apply(model: Module): readonly AppliedModule[] {
    if (this.#model) throw new ApplyError('already_applied', 'adapter is already applied', { expected: 'unload() first', got: this.name });
    const { plans, issues } = this.#plan(model);
    for (const plan of plans.values()) this.#check(model, plan, issues);
    if (issues.length) throw new ApplyError('apply_failed', issuesMessage(`cannot apply adapter "${this.name}"`, issues), {}, issues);
    // Before any change: matching the config's patterns can still fail (a regex budget).
    const warnings = this.#missingKeys(model);

    const applied: AppliedModule[] = [];
    const uploads = new Map<Backend, Map<Tensor, Tensor>>();
    const made = this.#uploads;
    try {
      for (const plan of plans.values()) {
        const target = model.get(plan.path)!;
        const wrapped = !isLoRALayer(target);
        const layer = wrapped ? wrap(target as Base, plan) : target;
        const base = layer.original as Base;
        const cache = uploads.get(base.backend) ?? uploads.set(base.backend, new Map()).get(base.backend)!;
        const upload = (t: Tensor) => {
          let u = cache.get(t);
          if (!u) {
            cache.set(t, (u = base.backend.upload(t)));
            if (u !== t) made.push(u); // this container's copy, shared by its layers: freed at unload
          }
          return u;
        };
        layer.addAdapter(this.#init(plan, base), upload);
        if (wrapped) {
          layer.path = plan.path;
          model.replace(plan.path, layer);
        }
        applied.push({ path: plan.path, from: plan.from, layer, wrapped });
        if (this.#scale !== 1) layer.setScale(this.#scale, this.name);
        if (!this.#enabled) layer.setAdapterEnabled(this.name, false);
      }
    } catch (e) {
      this.#detach(model, applied);
      throw e;
    }
    this.#model = model;
    this.#applied = applied;
    this.#applyWarnings = warnings;
    if (this.#applyWarnings.length && !this.#warned) {
      this.#warned = true;
      console.warn(`peftjs: ${this.#applyWarnings.join('\n')}`);
    }
    return applied;
  }

  /**
   * PEFT's "Found missing adapter keys" warning (`PeftModel.from_pretrained`): modules of this model the config
   * targets (Linear, Conv1D, QuantizedLinear, Embedding, or a LoRA layer wrapping one) that the checkpoint holds no
   * weights for. PEFT wraps them with untrained (B = 0, so inert) LoRA weights; here they are left as they are.
   */
  #missingKeys(model: Module): string[] {
    if (this.spec.format !== 'peft') return [];
    const paths: string[] = [];
    for (const [path, m] of model.namedModules()) {
      if (isLoRALayer(m) || m instanceof Linear || m instanceof Conv1D || m instanceof QuantizedLinear || m instanceof Embedding) paths.push(path);
    }
    const keys = missingAdapterKeys({ ...this.spec, name: this.name }, paths);
    return keys.length ? [missingKeysWarning(keys)] : [];
  }

  /** Groups spec modules and replacements by the model path they resolve to. */
  #plan(model: Module): { plans: Map<string, Plan>; issues: Issue[] } {
    const issues: Issue[] = [];
    const plans = new Map<string, Plan>();
    const blocks = this.spec.mlx ? blockLists(model) : [];
    const add = (path: string, what: { module?: AdapterModule; replacement?: AdapterReplacement }) => {
      const paths = this.#resolve(model, path, blocks);
      if (!paths.length) {
        issues.push(issue('module_not_found', 'adapter targets a module the model does not have', { where: path, detail: this.spec.mlx ? `MLX key, num_layers ${this.spec.mlx.numLayers}` : undefined }));
      }
      for (const p of paths) {
        const plan = plans.get(p) ?? plans.set(p, { path: p, from: [], replacements: [] }).get(p)!;
        plan.from.push(path);
        if (what.module) {
          if (plan.module) issues.push(issue('already_applied', 'two adapter modules resolve to the same layer', { got: [plan.module.path, path], where: p }));
          plan.module = what.module;
        }
        if (what.replacement) plan.replacements.push(what.replacement);
      }
    };
    for (const module of this.spec.modules) add(module.path, { module });
    for (const replacement of this.spec.replacements) add(replacement.path, { replacement });
    return { plans, issues };
  }

  /** Absolute paths first; MLX keys are also tried relative to the last `numLayers` blocks of each block list. */
  #resolve(model: Module, path: string, blocks: readonly [string, string[]][]): string[] {
    if (model.get(path)) return [path];
    const mlx = this.spec.mlx;
    if (!mlx) return [];
    const found: string[] = [];
    for (const [list, indices] of blocks) {
      const last = mlx.numLayers < 0 ? indices : indices.slice(Math.max(0, indices.length - mlx.numLayers));
      for (const i of last) if (model.get(`${list}.${i}.${path}`)) found.push(`${list}.${i}.${path}`);
    }
    return found;
  }

  /** Every check for one target, issues appended (nothing is changed). */
  #check(model: Module, plan: Plan, issues: Issue[]): void {
    const where = plan.path;
    const target = model.get(plan.path)!;
    const stacked = isLoRALayer(target);
    const base = (stacked ? target.original : target) as Module;
    const push = (code: ApplyCode, problem: string, facts: ErrorFacts = {}) => issues.push(issue(code, problem, { where, ...facts }));
    if (stacked && target.adapter(this.name)) push('already_applied', 'an adapter with this name is already on the layer', { got: this.name });
    const isProjection = base instanceof Linear || base instanceof Conv1D || base instanceof QuantizedLinear;
    const mod = plan.module;
    if (mod) {
      const wants = mod.kind === 'embedding' ? 'Embedding' : mod.kind === 'dora' ? 'Linear or QuantizedLinear' : 'Linear, Conv1D or QuantizedLinear';
      const fits =
        mod.kind === 'embedding'
          ? base instanceof Embedding
          : mod.kind === 'dora'
            ? base instanceof Linear || base instanceof QuantizedLinear
            : isProjection;
      if (!fits) {
        const got = stacked ? `${target.constructor.name} (stacking ${mod.kind} is not supported on it)` : base.constructor.name;
        push('not_wrappable', `a ${mod.kind} adapter cannot wrap this module`, { expected: wants, got });
        return;
      }
      const [k, n] = base instanceof Embedding ? [base.vocab, base.dim] : [(base as Projection).k, (base as Projection).n];
      const { a, b } = mod;
      if (mod.in !== k || a.shape[0] !== k) push('in_mismatch', 'adapter in features do not match the layer', { expected: k, got: mod.in !== k ? mod.in : a.shape[0] });
      if (mod.out !== n || b.shape[1] !== n) push('out_mismatch', 'adapter out features do not match the layer', { expected: n, got: mod.out !== n ? mod.out : b.shape[1] });
      if (a.shape[1] !== mod.rank || b.shape[0] !== mod.rank)
        push('rank_mismatch', 'lora_A and lora_B ranks differ', { expected: mod.rank, got: { a: a.shape, b: b.shape } });
      if (mod.bias && mod.bias.shape[0] !== n) push('out_mismatch', 'lora_B bias does not match the layer', { expected: n, got: mod.bias.shape[0] });
      if (mod.magnitude && mod.magnitude.shape[0] !== n) push('out_mismatch', 'DoRA magnitude does not match the layer', { expected: n, got: mod.magnitude.shape[0] });
      for (const t of [a, b, mod.bias, mod.magnitude]) if (t && !FLOAT_DTYPES.includes(t.dtype)) push('dtype_mismatch', 'adapter factors must be float tensors (each backend widens them on upload)', { expected: FLOAT_DTYPES, got: t.dtype });
      if (!(base instanceof QuantizedLinear) && 'weight' in base && !FLOAT_DTYPES.includes((base.weight as Tensor).dtype))
        push('dtype_mismatch', 'the base weight is not a float tensor', { expected: FLOAT_DTYPES, got: (base.weight as Tensor).dtype });
    }
    for (const rep of plan.replacements) {
      const { weight, bias, indices, delta } = rep.tensors;
      if (rep.kind === 'trainable_tokens') {
        if (!(base instanceof Embedding)) {
          push('not_wrappable', 'trainable tokens need an embedding', { expected: 'Embedding', got: base.constructor.name });
          continue;
        }
        if (!indices || !delta) push('not_wrappable', 'trainable tokens need indices and delta', { got: Object.keys(rep.tensors) });
        else {
          const bad = Array.from(indices.data as Int32Array).find((i) => i < 0 || i >= base.vocab);
          if (bad !== undefined) push('in_mismatch', 'trainable token index outside the vocabulary', { expected: `0 ≤ id < ${base.vocab}`, got: bad });
          if (delta.shape[0] !== indices.size || delta.shape[1] !== base.dim)
            push('out_mismatch', 'trainable token rows do not match the table', { expected: [indices.size, base.dim], got: delta.shape });
        }
        continue;
      }
      if (!isProjection && !(base instanceof Embedding && rep.kind === 'modules_to_save')) {
        push('not_wrappable', `a ${rep.kind} replacement cannot target this module`, { expected: 'Linear, Conv1D, QuantizedLinear or Embedding', got: base.constructor.name });
        continue;
      }
      const [rows, cols] = base instanceof Embedding ? [base.vocab, base.dim] : base instanceof Conv1D ? [base.k, base.n] : [(base as Projection).n, (base as Projection).k];
      const n = base instanceof Embedding ? base.dim : (base as Projection).n;
      if (weight) {
        const [inDim, outDim] = base instanceof Embedding || base instanceof Conv1D ? [0, 1] : [1, 0];
        if (weight.ndim !== 2 || weight.shape[outDim] !== [rows, cols][outDim])
          push('out_mismatch', 'replacement weight does not match the layer', { expected: [rows, cols], got: weight.shape, detail: rep.kind });
        else if (weight.shape[inDim] !== [rows, cols][inDim])
          push('in_mismatch', 'replacement weight does not match the layer', { expected: [rows, cols], got: weight.shape, detail: rep.kind });
      }
      if (bias && (bias.ndim !== 1 || bias.shape[0] !== n)) push('out_mismatch', 'replacement bias does not match the layer', { expected: [n], got: bias.shape, detail: rep.kind });
      for (const t of [weight, bias]) if (t && !FLOAT_DTYPES.includes(t.dtype)) push('dtype_mismatch', 'replacement tensors must be float', { expected: FLOAT_DTYPES, got: t.dtype });
    }
  }

  /** The layer-side adapter for one plan: factors, scale, and the replacement base built from the original. */
  #init(plan: Plan, base: Base): AdapterInit<Module> {
    const mod = plan.module;
    const init: AdapterInit<Module> = { name: this.name };
    if (mod) Object.assign(init, { a: mod.a, b: mod.b, scale: mod.scale }, mod.bias && { bias: mod.bias }, mod.magnitude && { magnitude: mod.magnitude });
    let rep: Base = base;
    for (const { kind, tensors } of plan.replacements) {
      const opts = { backend: base.backend };
      if (kind === 'trainable_tokens') rep = (rep as Embedding).withRows(tensors.indices.data as Int32Array, tensors.delta);
      else if (rep instanceof Embedding) rep = tensors.weight ? new Embedding(tensors.weight, opts) : rep;
      else if (!tensors.weight) rep = rep.withBias(tensors.bias ?? rep.bias);
      else if (rep instanceof Conv1D) rep = new Conv1D(tensors.weight, tensors.bias ?? rep.bias, opts);
      else rep = new Linear(tensors.weight, tensors.bias ?? rep.bias, opts);
    }
    if (rep !== base) init.replacement = rep;
    return init;
  }

  /**
   * Merges this adapter into the base weights of every layer it reached (float64, rounded once).
   * `{keepOriginal: true}` keeps runtime toggling (off = original weights); `{dequantize: true}` keeps QLoRA bases dense.
   */
  fuse(opts: FuseOptions = {}): void {
    this.#needApplied();
    if (this.#fused) throw new ApplyError('fused', 'adapter is already fused', { expected: 'unfuse() first', got: this.name });
    for (const { layer } of this.#applied) layer.fuseAdapter(this.name, opts);
    this.#fused = { ...opts };
    this.#enabled = true;
  }

  /** Restores the original weights bit-exactly (they were kept, nothing is subtracted). */
  unfuse(): void {
    this.#needApplied();
    if (!this.#fused) throw new ApplyError('not_fused', 'adapter is not fused', { got: this.name });
    for (const { layer } of this.#applied) layer.unfuseAdapter(this.name);
    this.#fused = undefined;
  }

  get isFused(): boolean {
    return !!this.#fused;
  }

  /** Removes this adapter; layers left with no adapter are replaced by the very module objects that were wrapped. */
  unload(model: Module | undefined = this.#model): void {
    this.#needApplied();
    if (model !== this.#model) throw new ApplyError('not_applied', 'adapter was applied to another model', { got: this.name });
    this.#detach(model!, this.#applied);
    this.#applied = [];
    this.#model = undefined;
    this.#fused = undefined;
    this.#applyWarnings = [];
  }

  #detach(model: Module, applied: readonly AppliedModule[]): void {
    for (const { path, layer } of [...applied].reverse()) {
      if (layer.adapter(this.name)) layer.removeAdapter(this.name);
      if (layer.adapters.length === 0 && model.get(path) === layer) model.replace(path, layer.original);
    }
    for (const t of this.#uploads.splice(0)) t.dispose();
  }

  /** Unloads this adapter if it is applied (its backend copies are freed then); the spec stays readable. Idempotent. */
  dispose(): void {
    if (this.#model) this.unload();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  #needApplied(): void {
    if (!this.#model) throw new ApplyError('not_applied', 'adapter is not applied to a model', { expected: 'apply(model) first', got: this.name });
  }

  toString(): string {
    const s = this.spec;
    return `LoRAContainer(${this.name}, ${s.format}, ${s.modules.length} modules${s.replacements.length ? `, ${s.replacements.length} replacements` : ''}, ${this.#model ? `${this.#applied.length} applied` : 'not applied'}, ${this.#enabled ? 'on' : 'off'}${this.#fused ? ', fused' : ''})`;
  }
}

function issue(code: ApplyCode, problem: string, facts: ErrorFacts): Issue {
  return { code, message: formatMessage(problem, facts), ...facts };
}

/** `[path, sorted numeric child names]` of each block list (`…layers`, `…h`, `…block`) in the model. */
function blockLists(model: Module): [string, string[]][] {
  const out: [string, string[]][] = [];
  for (const [path, m] of model.namedModules()) {
    const last = path.slice(path.lastIndexOf('.') + 1);
    if (!(BLOCK_LISTS as readonly string[]).includes(last)) continue;
    const indices = [...m.children.keys()].filter((k) => /^\d+$/.test(k)).sort((x, y) => +x - +y);
    if (indices.length) out.push([path, indices]);
  }
  return out;
}

/** The wrapper class for a base layer and what the plan adds to it. */
function wrap(base: Base, plan: Plan): LoRAModule {
  const dora = plan.module?.kind === 'dora';
  if (base instanceof Embedding) return LoRAEmbedding.fromBase(base);
  if (base instanceof QuantizedLinear) return dora ? QDoRALinear.fromBase(base) : QLoRALinear.fromBase(base);
  return dora ? DoRALinear.fromBase(base) : LoRALinear.fromBase(base);
}
