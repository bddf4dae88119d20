import { Module } from '../nn/module.js';
import { ApplyError } from '../errors.js';
import { LoRAModule, fusedError, isLoRALayer, type RowAdapters } from './layer.js';

export interface SetEnabledOptions {
  /** Only this adapter (by name) on each layer; default: the whole layer (`loraEnabled`). */
  adapter?: string;
}

/**
 * Turns LoRA on or off on every LoRA layer of `model` (the model itself included). Off is bit-identical to
 * the base model. All layers are checked first (a fused adapter cannot be toggled), so a failure changes
 * nothing. Returns the number of layers switched.
 */
export function setLoRAEnabled(model: Module, on: boolean, opts: SetEnabledOptions = {}): number {
  const { adapter } = opts;
  const targets = loraLayersOf(model, adapter);
  for (const layer of targets) {
    const changes = adapter === undefined ? layer.loraEnabled !== on : layer.adapter(adapter)!.enabled !== on;
    const locked = changes && layer.fusedLock(adapter);
    if (locked) throw fusedError(layer.path, locked.name);
  }
  for (const layer of targets) {
    if (adapter === undefined) layer.loraEnabled = on;
    else layer.setAdapterEnabled(adapter, on);
  }
  return targets.length;
}

interface LayerList {
  version: number;
  all: LoRAModule[];
  /** Per adapter name: the layers holding it. */
  byAdapter: Map<string, LoRAModule[]>;
}
const lists = new WeakMap<Module, LayerList>();

/**
 * The LoRA layers of `model` (itself included), or those holding `adapter`: cached per tree and rebuilt only when
 * the tree changed (`Module.treeVersion`) or an adapter was added/removed, so a per-step flip walks no tree and
 * allocates nothing.
 */
export function loraLayersOf(model: Module, adapter?: string): readonly LoRAModule[] {
  let list = lists.get(model);
  if (!list || list.version !== Module.treeVersion + LoRAModule.adapterVersion) {
    const all: LoRAModule[] = [];
    if (isLoRALayer(model)) all.push(model);
    for (const [, m] of model.namedModules()) if (isLoRALayer(m)) all.push(m);
    list = { version: Module.treeVersion + LoRAModule.adapterVersion, all, byAdapter: new Map() };
    lists.set(model, list);
  }
  if (adapter === undefined) return list.all;
  let some = list.byAdapter.get(adapter);
  if (!some) list.byAdapter.set(adapter, (some = list.all.filter((l) => l.adapter(adapter))));
  return some;
}

/**
 * Runs `fn` with per-request adapters on every LoRA layer of `model`: each layer's plain `forward(x)` then takes
 * `adapters[i]` for row i (see `ForwardOptions`), so a caller that knows nothing of routes (a decoder's blocks)
 * runs a mixed batch. A name no layer of the model holds is a typed error before `fn` runs; a layer that does not
 * hold a named adapter runs those rows without it (PEFT: an adapter only touches the modules it targets).
 * The scope ends when `fn` returns (or its promise settles).
 */
export function withAdapters<T>(model: Module, adapters: readonly RowAdapters[], fn: () => T): T {
  const layers = loraLayersOf(model);
  const known = new Set(layers.flatMap((l) => l.adapters.map((a) => a.name)));
  adapters.forEach((names, i) => {
    for (const name of names === null ? [] : typeof names === 'string' ? [names] : names) {
      if (!known.has(name)) throw new ApplyError('not_applied', 'a route names an adapter the model does not hold', { expected: [...known], got: name, where: `adapters[${i}]` });
    }
  });
  const prev = layers.map((l) => l.scopedAdapters);
  const restore = () => layers.forEach((l, i) => (l.scopedAdapters = prev[i]));
  for (const l of layers) l.scopedAdapters = adapters;
  let out: T;
  try {
    out = fn();
  } catch (e) {
    restore();
    throw e;
  }
  if (out instanceof Promise) return out.finally(restore) as T;
  restore();
  return out;
}
