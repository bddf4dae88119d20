/// <reference types="@webgpu/types" />
/**
 * Acquiring a GPUDevice: feature detection, the limits we ask for, and device-loss tracking.
 * Every failure is a BackendError: `no_webgpu` (no navigator.gpu / no adapter / requestDevice failed).
 */
import { BackendError } from '../../errors.js';

export interface WebGPUOptions {
  /** A GPU entry point (`navigator.gpu`, or `create([])` from the `webgpu` npm package in Node). */
  gpu?: GPU;
  /** Use this adapter instead of requesting one. */
  adapter?: GPUAdapter;
  /** Use this device (its features decide f16); the backend then never destroys it. */
  device?: GPUDevice;
  /** Store f16 weights as f16 when the adapter has `shader-f16` (default true); false forces f32 storage. */
  f16?: boolean;
  /** Largest m routed to the GEMV kernels (default 8, at most 16); 0 forces the tiled GEMM for every m. */
  gemvMaxM?: number;
  /**
   * Use subgroup operations (the `subgroups` feature: subgroupAdd reductions in the GEMV) when the adapter has
   * them (default true); false forces the workgroup-memory reduction. `backend.kernelFor` says which runs.
   */
  subgroups?: boolean;
  /** Force one GEMM tile for every m on the GEMM route (tests: exercise each tile on small shapes); default by shape. */
  gemmTile?: 'L' | 'M' | 'S';
  /**
   * Dispatches recorded into the shared command encoder before it is submitted (default 64, see SUBMIT_EVERY in
   * backend.ts); reading a tensor submits whatever is recorded. 1 submits after every op.
   */
  submitEvery?: number;
}

/**
 * Storage buffers the quantised kernel binds at once (x, w, scales, biases, bias, row_scale, t, B, y).
 * The WebGPU default limit is 8; every desktop adapter offers at least 10 (Dawn SwiftShader 12, wgpu 10).
 */
export const WANTED_STORAGE_BUFFERS = 10;

export interface GpuContext {
  readonly adapter: GPUAdapter | undefined;
  readonly device: GPUDevice;
  /** The device has `shader-f16` and f16 storage is enabled. */
  readonly f16: boolean;
  /** The device has `subgroups` and they are enabled (GEMV reductions with subgroupAdd). */
  readonly subgroups: boolean;
  /** The device has `timestamp-query` (per-pass GPU time: `backend.gpuTime`). */
  readonly timestamps: boolean;
  /** A software rasteriser (SwiftShader, WARP, llvmpipe): correct but slower than the wasm backend. */
  readonly software: boolean;
  /** A one-line description of the adapter for logs and `backend.toString()`. */
  readonly description: string;
  /** Set once `device.lost` resolves. */
  lost: GPUDeviceLostInfo | undefined;
  readonly ownsDevice: boolean;
  /**
   * The GPU entry point the device came from, held for the backend's lifetime: Node's `webgpu` package (Dawn) tears
   * its instance down when the object `create()` returned is garbage-collected, crashing later calls. A caller
   * may pass `{ gpu: create([]) }` and drop its own reference.
   */
  readonly entry: GPU | undefined;
}

function gpuEntry(opts: WebGPUOptions): GPU | undefined {
  if (opts.gpu) return opts.gpu;
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  return nav?.gpu;
}

function describe(adapter: GPUAdapter | undefined): { description: string; software: boolean } {
  const info = adapter?.info;
  if (!info) return { description: 'unknown adapter', software: false };
  const text = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ');
  const software =
    (info as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter === true ||
    /swiftshader|llvmpipe|lavapipe|warp|software/i.test(text);
  return { description: text || 'unnamed adapter', software };
}

/** Finds an adapter and creates a device; throws BackendError('no_webgpu') with the reason. */
export async function requestGpu(opts: WebGPUOptions = {}): Promise<GpuContext> {
  let adapter = opts.adapter;
  let device = opts.device;
  const entry = gpuEntry(opts);
  if (!device) {
    if (!adapter) {
      const gpu = entry;
      if (!gpu) {
        throw new BackendError('no_webgpu', 'WebGPU is not available', {
          expected: 'navigator.gpu',
          got: 'undefined',
          detail: 'in Node pass {gpu} from the `webgpu` package; in Chromium use a secure context (or --enable-unsafe-webgpu)',
        });
      }
      adapter = (await gpu.requestAdapter({ powerPreference: 'high-performance' })) ?? undefined;
      if (!adapter) throw new BackendError('no_webgpu', 'no WebGPU adapter', { expected: 'a GPUAdapter', got: 'null' });
    }
    const features: GPUFeatureName[] = [];
    if (opts.f16 !== false && adapter.features.has('shader-f16')) features.push('shader-f16');
    // Requested only when offered: neither costs anything unused.
    if (opts.subgroups !== false && adapter.features.has('subgroups')) features.push('subgroups' as GPUFeatureName);
    if (adapter.features.has('timestamp-query')) features.push('timestamp-query');
    const limits = adapter.limits;
    try {
      device = await adapter.requestDevice({
        label: 'peftjs',
        requiredFeatures: features,
        requiredLimits: {
          maxStorageBuffersPerShaderStage: Math.min(limits.maxStorageBuffersPerShaderStage, WANTED_STORAGE_BUFFERS),
          // Weights are single buffers: ask for everything the adapter allows.
          maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
          maxBufferSize: limits.maxBufferSize,
        },
      });
    } catch (cause) {
      throw new BackendError('no_webgpu', 'requestDevice failed', { cause, detail: String(cause) });
    }
  }
  const { description, software } = describe(adapter);
  const ctx: GpuContext = {
    adapter,
    device,
    f16: opts.f16 !== false && device.features.has('shader-f16'),
    subgroups: opts.subgroups !== false && device.features.has('subgroups'),
    timestamps: device.features.has('timestamp-query'),
    software,
    description,
    lost: undefined,
    ownsDevice: !opts.device,
    entry,
  };
  void device.lost.then((info) => {
    ctx.lost = info;
  });
  return ctx;
}

/** Throws BackendError('device_lost') once the device is gone. */
export function assertAlive(ctx: GpuContext): void {
  if (ctx.lost) {
    throw new BackendError('device_lost', 'the WebGPU device was lost', {
      got: ctx.lost.reason,
      detail: ctx.lost.message || undefined,
    });
  }
}
