import { ApplyError } from '../errors.js';
import type { Tensor } from '../tensor.js';

/**
 * A Module subclass, as `Module.get` takes it to check what it returns. Typed by its prototype, not a `new`
 * signature, so classes with protected constructors (LoRALinear & co., built by `fromBase`) qualify.
 */
export type ModuleClass<T extends Module> = Function & { readonly prototype: T };

/**
 * A module tree with HF paths: `model.layers.0.self_attn.q_proj` names the child `q_proj` of `self_attn` of
 * the child `0` of `layers` of `model`. A Module is a node with named children, in insertion order; layers
 * (Linear, Embedding, LoRALinear, …) are Modules whose `forward` calls one backend op.
 */
export class Module {
  /**
   * Bumped by every `set` / `replace` on any module: caches of a tree's layers (setLoRAEnabled's list of LoRA
   * layers) compare it to know they are still true, so a toggle costs O(LoRA layers), not a tree walk.
   */
  static treeVersion = 0;

  /** Named children, in insertion order. */
  readonly children = new Map<string, Module>();

  /** Adds or replaces the direct child `name`; returns `this` for chaining. */
  set(name: string, child: Module): this {
    this.children.set(name, child);
    Module.treeVersion++;
    return this;
  }

  /**
   * The module at a dotted path (`''` is this module), or undefined. Name the layer class to get it typed and
   * checked: `model.get(path, LoRALinear)?.forward(x)` (ApplyError 'wrong_module_type' if it is something else);
   * `model.get<LoRALinear>(path)` types it without a check.
   */
  get<T extends Module = Module>(path: string, type?: ModuleClass<T>): T | undefined {
    let m: Module | undefined = this;
    if (path !== '') {
      for (const part of path.split('.')) {
        m = m.children.get(part);
        if (!m) return undefined;
      }
    }
    if (type && !(m instanceof type)) {
      throw new ApplyError('wrong_module_type', 'the module is not of the class asked for', { module: path, expected: type.name, got: m.constructor.name });
    }
    return m as T;
  }

  /** Replaces the module at `path` (which must exist) and returns the module that was there. */
  replace(path: string, module: Module): Module {
    const dot = path.lastIndexOf('.');
    const parent = dot < 0 ? this : this.get(path.slice(0, dot));
    const name = path.slice(dot + 1);
    const old = parent?.children.get(name);
    if (!parent || !old) throw new ApplyError('module_not_found', 'no module to replace', { expected: 'an existing module path', got: path, where: 'Module.replace' });
    parent.children.set(name, module);
    Module.treeVersion++;
    return old;
  }

  /** Every descendant as `[path, module]`, depth first, parents before children (this module excluded). */
  *namedModules(prefix = ''): Generator<[string, Module]> {
    for (const [name, child] of this.children) {
      const path = prefix ? `${prefix}.${name}` : name;
      yield [path, child];
      yield* child.namedModules(path);
    }
  }

  /** Backend tensors this module uploaded itself (not ones it was handed already resident); freed by `dispose`. */
  protected readonly owned: Tensor[] = [];

  /** `backend.upload(t)`, remembering the copy when one was made, so `dispose` frees exactly what this module made. */
  protected own(t: Tensor, upload: (t: Tensor) => Tensor): Tensor {
    const u = upload(t);
    if (u !== t) this.owned.push(u);
    return u;
  }

  /** Frees what `own` recorded (layers call it from their `dispose`). */
  protected freeOwned(): void {
    for (const t of this.owned.splice(0)) t.dispose();
  }

  /** `Module(3 children)`; layers override with their shapes. */
  toString(): string {
    return `Module(${this.children.size} children)`;
  }
}

/**
 * Frees a whole module tree's backend memory now (wasm memory, GPU buffers) instead of waiting for GC: every
 * module in it that has a `dispose` (layers: their own uploads; LoRA layers: their adapters, merged copies and
 * the wrapped original) — `root` included. The tree must not be used afterwards.
 */
export function disposeModule(root: Module): void {
  const all: Module[] = [root, ...Array.from(root.namedModules(), ([, m]) => m)];
  for (const m of all.reverse()) (m as { dispose?: () => void }).dispose?.();
}

/** Builds nested plain Modules along `path` under `root` (creating missing ones) and sets `leaf` there. */
export function setPath(root: Module, path: string, leaf: Module): void {
  const parts = path.split('.');
  let m = root;
  for (const part of parts.slice(0, -1)) {
    let next = m.children.get(part);
    if (!next) m.set(part, (next = new Module()));
    m = next;
  }
  m.set(parts[parts.length - 1], leaf);
}
