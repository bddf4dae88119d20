import type { Module } from '../nn/module.js';
import { modelFromWeights, type ModelFromWeightsOptions } from '../nn/model-from-weights.js';
import type { AdapterSource } from '../io/fileset.js';
import { readCheckpoint, type CheckpointOptions } from './checkpoint.js';

/**
 * Reads a checkpoint folder with `readCheckpoint` (`model.safetensors`, or the shards of
 * `model.safetensors.index.json`; `config.json` for `model_type` and MLX `quantization` when present) and builds it
 * with `modelFromWeights`: a tree of base layers by HF path, for any architecture. `onProgress` hears each tensor
 * read: bytes so far of all shards, their total, and the shard.
 */
export async function loadModel(source: AdapterSource, opts: ModelFromWeightsOptions & CheckpointOptions = {}): Promise<Module> {
  const { signal, onProgress, limits, fetch, ...options } = opts;
  const { config, tensors } = await readCheckpoint(source, { signal, onProgress, limits, fetch });
  const q = config?.quantization as { bits?: 4 | 8; group_size?: number } | undefined;
  return modelFromWeights(tensors, {
    modelType: config?.model_type as string | undefined,
    quantization: q?.bits && q.group_size ? { bits: q.bits, groupSize: q.group_size } : undefined,
    ...options,
  });
}
