/// <reference types="@webgpu/types" />
// Node WebGPU for the GPU tests: Dawn from the `webgpu` npm package. Without a hardware GPU, Vulkan is
// pointed at Chromium's SwiftShader ICD (Mesa lavapipe is rejected by Dawn). Set VK_ICD_FILENAMES yourself
// to use another driver.
import { existsSync } from 'node:fs';
import { createWebGPUBackend, type WebGPUBackend } from '../../src/backends/webgpu/index.js';
import type { WebGPUOptions } from '../../src/backends/webgpu/device.js';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

let entry: Promise<GPU> | undefined;

/** The process-wide GPU entry point (created once). */
export function nodeGpu(): Promise<GPU> {
  entry ??= (async () => {
    if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD)) process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
    const { create, globals } = await import('webgpu');
    Object.assign(globalThis, globals);
    return create([]);
  })();
  return entry;
}

export async function gpuBackend(opts: WebGPUOptions = {}): Promise<WebGPUBackend> {
  return createWebGPUBackend({ gpu: await nodeGpu(), ...opts });
}
