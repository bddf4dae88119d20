/// <reference types="@webgpu/types" />
/**
 * The WebGPU backend: `createWebGPUBackend()` finds an adapter (or takes yours), creates a device and returns
 * a Backend whose tensors live on the GPU. Throws BackendError('no_webgpu') when there is no WebGPU.
 */
import type { Backend } from '../backend.js';
import { WebGPUBackend } from './backend.js';
import { requestGpu, type WebGPUOptions } from './device.js';

export async function createWebGPUBackend(opts: WebGPUOptions = {}): Promise<WebGPUBackend> {
  const ctx = await requestGpu(opts);
  return new WebGPUBackend(ctx, opts);
}

export { WebGPUBackend, type WebGPUStats } from './backend.js';
export { BufferPool } from './buffer-pool.js';
export { type WebGPUOptions, requestGpu } from './device.js';
export { GpuStorage } from './gpu-storage.js';
export { createAutoBackend, type AutoBackend, type AutoOptions, GPU_MIN_WORK } from './auto.js';
export type { Backend };
