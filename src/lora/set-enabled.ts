import type { Module } from '../nn/module.js';
import { fusedError, isLoRALayer, type LoRAModule } from './layer.js';

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
  const layers: LoRAModule[] = [];
  if (isLoRALayer(model)) layers.push(model);
  for (const [, m] of model.namedModules()) if (isLoRALayer(m)) layers.push(m);
  const { adapter } = opts;
  const targets = adapter === undefined ? layers : layers.filter((l) => l.adapter(adapter));
  for (const layer of targets) {
    const changes = adapter === undefined ? layer.loraEnabled !== on : layer.adapter(adapter)!.enabled !== on;
    const locked = changes && layer.adapters.find((ad) => ad.fused && !ad.fused.keepOriginal && (adapter === undefined || ad.name === adapter));
    if (locked) throw fusedError(layer.path, locked.name);
  }
  for (const layer of targets) {
    if (adapter === undefined) layer.loraEnabled = on;
    else layer.setAdapterEnabled(adapter, on);
  }
  return targets.length;
}
