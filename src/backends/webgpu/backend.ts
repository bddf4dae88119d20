/// <reference types="@webgpu/types" />
/**
 * WebGPUBackend: the Backend interface on WGSL kernels. Tensors it returns live in GPUBuffers (GpuStorage)
 * and stay there between layers; `await t.read()` is the only readback. Weights are uploaded once
 * (`upload`), every other buffer comes from the pool, each pipeline is compiled once per storage-type
 * variant. Adapter toggle and scale are uniforms: empty `deltas` runs the base kernel alone (r = 0), a
 * changed scale is a new uniform value — no pipeline, no allocation, no upload.
 *
 * Dispatches per layer: linear off 1 (GEMV for m ≤ gemvMaxM, else the register-tiled GEMM; `kernelFor` and
 * `stats.kernels` say which); on, one k-split shrink per adapter + 1 (2 for one adapter, at every m), the expand
 * in the GEMV/GEMM epilogue. quantizedLinear and embedding: 1 off, adapters + 1 / adapters on.
 * Transformer ops: 1 dispatch each (zeros: a clear).
 *
 * Submission: ops record into one shared command encoder (`Batch`), submitted when a tensor is read, every
 * `submitEvery` dispatches (default SUBMIT_EVERY), or when a host upload needs a buffer the open batch still
 * holds (see buffer-pool.ts). Uniforms go to a CPU-side ring written to one GPU uniform buffer per submit and
 * bound with dynamic offsets, and bind groups are cached by the buffers they bind: a decode step that reuses
 * its buffers creates no bind group, no uniform buffer and issues a few submits instead of one per op.
 */
import type { DType } from '../../dtype.js';
import { BackendError } from '../../errors.js';
import { Tensor } from '../../tensor.js';
import { isQuantized, routeGroups, routePasses, type AttentionShape, type Backend, type LinearWeight, type LoRADelta, type QuantizedWeight, type Route, type UploadOptions } from '../backend.js';
import { checkRoute } from '../js.js';
import { BufferPool } from './buffer-pool.js';
import { widen16 } from './convert.js';
import { assertAlive, type GpuContext, type WebGPUOptions } from './device.js';
import { GpuStorage, type GpuOwner } from './gpu-storage.js';
import * as K from './kernels.js';
import { type Compiled, PipelineCache, type Shader, type StorageType } from './pipelines.js';

const QUERY_RESOLVE = 0x0200;

// GPUBufferUsage values (spelled out so this module loads where the global is missing).
const MAP_READ = 0x0001;
const COPY_SRC = 0x0004;
const COPY_DST = 0x0008;
const UNIFORM = 0x0040;
const STORAGE = 0x0080;
const TENSOR_USAGE = STORAGE | COPY_SRC | COPY_DST;

/**
 * Dispatches recorded before the shared encoder is submitted: enough to spread one submit's fixed cost over a
 * few decoder layers, few enough that the GPU starts on a step while the rest is still being recorded.
 */
export const SUBMIT_EVERY = 64;

/** Uniform blocks the ring holds (one slot per dispatch, each aligned to minUniformBufferOffsetAlignment). */
const RING_SLOTS = 256;

/** Cached bind groups (least recently used dropped first): a few decode steps' worth of distinct bindings. */
const BIND_GROUP_CACHE = 4096;

/** Counters benches read (dispatches per forward) and tests assert on. */
export interface WebGPUStats {
  dispatches: number;
  submits: number;
  /** Weights made resident with `upload`, and their bytes. */
  uploads: number;
  uploadBytes: number;
  /** Non-GPU inputs copied in for one call. */
  inputUploads: number;
  readbacks: number;
  /** Bind groups created (a cache miss each). */
  bindGroups: number;
  /** Dispatches per pipeline id (`name[variant]`, e.g. `linear_gemv[mb=1,sg,v4,w=f32,b=f32]`): which kernels ran. */
  kernels: Record<string, number>;
}

/** A buffer bound to a kernel and the element type the kernel must read it as. */
interface Bound {
  buffer: GPUBuffer;
  type: StorageType;
}

/** The stacked B of several adapters (and lora-bias rows), packed to f32 once and reused. */
/** Adapter banks of routed batches kept at once (each a distinct set of adapters; the oldest is freed first). */
const MAX_BANKS = 8;

/** Host bytes of a tensor converted for the GPU: f64 → f32, f16 → f32 unless kept, bf16 → f32 unless kept. */
function hostBytes(t: Tensor, keepF16: boolean, keepBf16 = false): { bytes: Uint8Array; dtype: DType } {
  const data = t.data;
  if (t.dtype === 'bf16' && keepBf16) return { bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), dtype: 'bf16' };
  switch (t.dtype) {
    case 'f32':
    case 'i32':
    case 'u32':
      return { bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), dtype: t.dtype };
    case 'f16':
      if (keepF16) return { bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), dtype: 'f16' };
      return { bytes: new Uint8Array(widen16(data as Uint16Array, 'f16').buffer), dtype: 'f32' };
    case 'bf16':
      return { bytes: new Uint8Array(widen16(data as Uint16Array, 'bf16').buffer), dtype: 'f32' };
    case 'f64':
      return { bytes: new Uint8Array(Float32Array.from(data as Float64Array).buffer), dtype: 'f32' };
    default:
      throw new BackendError('dtype_unsupported', 'dtype not supported on WebGPU', {
        expected: 'f32, f16, bf16, f64, i32 or u32',
        got: t.dtype,
        detail: t.toString(),
      });
  }
}

/** writeBuffer needs a multiple of 4 bytes (wasm-memory views may sit on a SharedArrayBuffer: allowed). */
function padded(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  if (bytes.byteLength % 4 === 0) return bytes as Uint8Array<ArrayBuffer>;
  const out = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
  out.set(bytes);
  return out;
}

function shapeError(what: string, expected: unknown, got: unknown, where: string): BackendError {
  return new BackendError('shape_mismatch', `${what} has the wrong shape`, { expected, got, where });
}

/** The shared command encoder (internal): ops append to it until `WebGPUBackend.flush` submits it. */
interface Batch {
  readonly encoder: GPUCommandEncoder;
  pass: GPUComputePassEncoder | undefined;
  /** The pipeline the open pass last set (a pass keeps it: q, k, v and gate, up run back to back on one). */
  pipeline: GPUComputePipeline | undefined;
  /** Bytes of the uniform ring used. */
  ringUsed: number;
  dispatches: number;
}

/** One op (internal): the pooled buffers it holds while recording, released when it ends. */
export class Call {
  readonly temps: GPUBuffer[] = [];
  private readonly outputs: GPUBuffer[] = [];

  constructor(
    private readonly be: WebGPUBackend,
    readonly label: string,
  ) {}

  /**
   * A non-GPU tensor copied into a pooled buffer for this call; a GPU tensor bound as is. A resident bf16 weight
   * (uploaded with keepBf16) binds as bf16 where the kernel reads it through its loader (`bf16Ok`: W of linear,
   * the embedding table); anywhere else it is a typed error.
   */
  input(t: Tensor, keepF16: boolean, what: string, bf16Ok = false): Bound {
    if (t.storage instanceof GpuStorage) {
      this.own(t, what);
      if (t.dtype === 'bf16') {
        if (!bf16Ok) throw new BackendError('dtype_unsupported', 'a bf16 GPU tensor is read only as a linear weight or an embedding table', { got: what, where: this.label });
        return { buffer: t.storage.buffer, type: 'bf16' };
      }
      if (t.dtype === 'f16' && !keepF16) return { buffer: this.be.widened(this, t.storage.buffer, t.size, what), type: 'f32' };
      return { buffer: t.storage.buffer, type: t.dtype === 'f16' ? 'f16' : 'f32' };
    }
    const { bytes, dtype } = hostBytes(t, keepF16 && this.be.f16);
    const buffer = this.be.pool.acquire(bytes.byteLength, TENSOR_USAGE, `${this.label} › ${what} (input)`);
    this.be.device.queue.writeBuffer(buffer, 0, padded(bytes));
    this.temps.push(buffer);
    this.be.stats.inputUploads++;
    return { buffer, type: dtype === 'f16' ? 'f16' : 'f32' };
  }

  /**
   * The GPU buffer of a tensor an op writes in place (rope, addInPlace, kvWrite): an f32 activation of this
   * backend. An uploaded weight is refused: it keeps the host bytes it came from, which would go stale.
   */
  target(t: Tensor, what: string): GPUBuffer {
    if (!(t.storage instanceof GpuStorage)) {
      throw new BackendError('wrong_device', 'an in-place op needs a tensor on this GPU backend', { expected: 'a tensor this backend returned (zeros, an op output)', got: `${t.device} tensor`, where: `${this.label} › ${what}` });
    }
    this.own(t, what);
    if (t.dtype !== 'f32') throw new BackendError('dtype_unsupported', 'an in-place op writes f32 only', { expected: 'f32', got: t.dtype, where: `${this.label} › ${what}` });
    if (t.storage.host) throw new BackendError('wrong_device', 'an uploaded weight cannot be written in place', { expected: 'an activation (zeros, an op output)', got: 'an uploaded weight', where: `${this.label} › ${what}` });
    return t.storage.buffer;
  }

  private own(t: Tensor, what: string): void {
    const st = t.storage as GpuStorage;
    if (st.owner !== this.be) throw new BackendError('wrong_device', 'tensor lives on another GPU backend', { where: `${this.label} › ${what}` });
    if (st.disposed) throw new BackendError('wrong_device', 'tensor was disposed', { where: `${this.label} › ${what}` });
  }

  /** The op's output buffer (kept when the op ends; released only if the call fails). */
  output(bytes: number, what: string): GPUBuffer {
    const buffer = this.be.pool.acquireGpu(bytes, TENSOR_USAGE, `${this.label} ${what}`);
    this.outputs.push(buffer);
    return buffer;
  }

  /**
   * The call threw. Work it already recorded (a cached B pack or f32 copy) stays in the batch, so the caches
   * hold real data once it is submitted; the output and temporaries go back to the pool.
   */
  fail(): void {
    this.temps.push(...this.outputs);
    this.outputs.length = 0;
    this.done();
  }

  /** A pooled f32 scratch buffer, released when the op ends. */
  scratch(floats: number, what: string): GPUBuffer {
    const buffer = this.be.pool.acquireGpu(Math.max(4, floats * 4), TENSOR_USAGE, `${this.label} › ${what}`);
    this.temps.push(buffer);
    return buffer;
  }

  dispatch<S>(shader: Shader<S>, uniforms: ArrayBuffer, buffers: GPUBuffer[], shape: S): void {
    this.be.record(shader, uniforms, buffers, shape);
  }

  /** The op is recorded: its temporaries go back to the pool, and the batch is submitted if it is long enough. */
  submit(): void {
    this.done();
    this.be.maybeFlush();
  }

  /** Releases the temporaries. */
  done(): void {
    for (const b of this.temps) this.be.pool.release(b);
    this.temps.length = 0;
  }
}

/** Uniform block builder: u32 fields, with f32 fields written by index. */
function uniforms(u32: number[], f32: Record<number, number> = {}): ArrayBuffer {
  const n = Math.ceil(u32.length / 4) * 4;
  const buf = new ArrayBuffer(n * 4);
  new Uint32Array(buf).set(u32);
  const f = new Float32Array(buf);
  for (const [i, v] of Object.entries(f32)) f[Number(i)] = v;
  return buf;
}

export class WebGPUBackend implements Backend, GpuOwner {
  readonly name = 'webgpu' as const;
  readonly stats: WebGPUStats = { dispatches: 0, submits: 0, uploads: 0, uploadBytes: 0, inputUploads: 0, readbacks: 0, bindGroups: 0, kernels: {} };
  readonly device: GPUDevice;
  readonly pool: BufferPool;
  readonly pipelines: PipelineCache;
  /** f16 weights stay f16 on the device (`shader-f16`). */
  readonly f16: boolean;
  /** Largest m that takes the GEMV kernels. */
  readonly gemvMaxM: number;
  /** A GEMM tile forced by the options (else chosen by shape). */
  private readonly gemmTile: K.GemmTileT | undefined;
  /** The GEMV reduces with subgroupAdd (device `subgroups`, not disabled by the options). */
  readonly subgroups: boolean;
  /** Timestamp writes for `gpuTime` (internal): the query set and the passes stamped so far. */
  private timing: { set: GPUQuerySet; used: number; cap: number; skipped: number } | undefined;
  private readonly dummy: GPUBuffer;
  private asyncError: BackendError | undefined;
  /**
   * Stacked f32 copies of adapter factors (a layer's stacked B's; the A and B banks of routed batches), by their
   * parts' buffer ids, most recent last; each freed with any of its parts. Routed banks (`capped`) are at most MAX_BANKS.
   */
  private readonly banks = new Map<string, { buffer: GPUBuffer; parts: GPUBuffer[]; capped: boolean }>();
  private readonly bankUsers = new Map<GPUBuffer, Set<string>>();
  private readonly f32Copies = new Map<GPUBuffer, GPUBuffer>();
  private disposed = false;
  /** Dispatches per submit (≥ 1). */
  private readonly submitEvery: number;
  private batch: Batch | undefined;
  /** The uniform ring: staged on the CPU, written to `ring` once per submit. */
  private readonly ring: GPUBuffer;
  private readonly ringHost: Uint8Array<ArrayBuffer>;
  private readonly ringAlign: number;
  private readonly bindGroupCache = new Map<string, GPUBindGroup>();
  private readonly bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 1;

  constructor(
    readonly ctx: GpuContext,
    opts: WebGPUOptions = {},
  ) {
    this.device = ctx.device;
    this.f16 = ctx.f16;
    this.gemvMaxM = Math.max(0, Math.min(opts.gemvMaxM ?? K.GEMV_DEFAULT_M, K.GEMV_MAX_M));
    this.subgroups = ctx.subgroups === true;
    this.gemmTile = opts.gemmTile ? K.GEMM_TILES[opts.gemmTile] : undefined;
    const sink = (e: BackendError) => {
      this.asyncError ??= e;
    };
    this.submitEvery = Math.max(1, Math.floor(opts.submitEvery ?? SUBMIT_EVERY));
    this.pool = new BufferPool(this.device, sink, () => this.flush());
    this.pipelines = new PipelineCache(this.device, sink);
    this.device.addEventListener?.('uncapturederror', (ev) => {
      const err = (ev as GPUUncapturedErrorEvent).error;
      sink(
        err instanceof GPUOutOfMemoryError
          ? new BackendError('gpu_out_of_memory', 'GPU out of memory', { detail: err.message })
          : new BackendError('shader_failed', 'WebGPU reported an error', { detail: err.message }),
      );
    });
    // Bound in place of absent optional inputs (bias, row scale, A, t, B); never read.
    this.dummy = this.pool.acquire(16, TENSOR_USAGE, 'peftjs unused binding');
    this.ringAlign = Math.max(16, this.device.limits.minUniformBufferOffsetAlignment ?? 256);
    this.ringHost = new Uint8Array(RING_SLOTS * this.ringAlign);
    this.ring = this.pool.acquire(this.ringHost.byteLength, UNIFORM | COPY_DST, 'peftjs uniform ring');
  }

  /** True on a software adapter (SwiftShader…): correct, slower than wasm. */
  get software(): boolean {
    return this.ctx.software;
  }

  toString(): string {
    return `WebGPUBackend(${this.ctx.description}${this.f16 ? ', f16' : ''})`;
  }

  /** Throws the device loss, or an error the device reported asynchronously since the last op. */
  private check(): void {
    if (this.disposed) throw new BackendError('disposed', 'the WebGPU backend was disposed', { detail: 'create a new one with createWebGPUBackend()' });
    assertAlive(this.ctx);
    const e = this.asyncError;
    if (e) {
      this.asyncError = undefined;
      throw e;
    }
  }

  private gpuTensor(shape: readonly number[], dtype: DType, buffer: GPUBuffer, byteLength: number, host?: Uint8Array): Tensor {
    return new Tensor(shape, dtype, new GpuStorage(buffer, byteLength, this, host));
  }

  // ── GpuOwner ────────────────────────────────────────────────────────────────────────────────────

  release(buffer: GPUBuffer): void {
    if (this.disposed) return;
    this.pool.release(buffer);
    for (const key of this.bankUsers.get(buffer) ?? []) this.dropBank(key);
    const copy = this.f32Copies.get(buffer);
    if (copy) {
      this.f32Copies.delete(buffer);
      this.pool.release(copy);
    }
  }

  /**
   * An f32 copy of a resident f16 tensor, for a binding the kernels read as f32 (x, bias, row scale):
   * converted on the GPU once (one `lora_pack` dispatch) and freed with the tensor.
   */
  widened(call: Call, src: GPUBuffer, count: number, what: string): GPUBuffer {
    let copy = this.f32Copies.get(src);
    if (!copy) {
      copy = this.pool.acquireGpu(count * 4, TENSOR_USAGE, `${what} (f32 copy)`);
      call.dispatch(K.loraPack({ src_t: 'f16' }), uniforms([count, 0, 0, 0]), [src, copy], { count });
      this.f32Copies.set(src, copy);
    }
    return copy;
  }

  async readBack(buffer: GPUBuffer, byteLength: number): Promise<Uint8Array> {
    this.check();
    const size = Math.ceil(byteLength / 4) * 4;
    const staging = this.pool.acquire(size, MAP_READ | COPY_DST, `${buffer.label} (readback)`);
    // The copy rides at the end of the open batch: one submit runs the pending ops and the copy.
    const batch = this.open();
    this.endPass(batch);
    batch.encoder.copyBufferToBuffer(buffer, 0, staging, 0, size);
    this.flush();
    this.stats.readbacks++;
    try {
      await staging.mapAsync(GPUMapMode.READ, 0, size);
    } catch (cause) {
      this.pool.release(staging);
      this.check();
      throw new BackendError('device_lost', 'reading a GPU buffer failed', { cause, detail: String(cause), where: buffer.label });
    }
    const out = new Uint8Array(staging.getMappedRange(0, size).slice(0, byteLength));
    staging.unmap();
    // Submitted and read: no open batch holds it, so the next read takes it without forcing a submit.
    this.pool.releaseIdle(staging);
    this.check();
    return out;
  }

  // ── the shared encoder ──────────────────────────────────────────────────────────────────────────

  private open(): Batch {
    this.batch ??= { encoder: this.device.createCommandEncoder({ label: 'peftjs batch' }), pass: undefined, pipeline: undefined, ringUsed: 0, dispatches: 0 };
    return this.batch;
  }

  private endPass(batch: Batch): void {
    batch.pass?.end();
    batch.pass = undefined;
    batch.pipeline = undefined;
  }

  /**
   * Submits the recorded ops (their uniforms first, in one write), and frees the buffers they released.
   * Reading a tensor does this; call it to start the GPU on recorded work without reading anything.
   */
  flush(): void {
    const batch = this.batch;
    if (this.disposed) return;
    if (!batch) {
      // Nothing recorded: whatever was released is referenced by submitted work only.
      this.pool.afterSubmit();
      return;
    }
    this.batch = undefined;
    this.endPass(batch);
    if (batch.ringUsed > 0) this.device.queue.writeBuffer(this.ring, 0, this.ringHost, 0, batch.ringUsed);
    this.device.queue.submit([batch.encoder.finish()]);
    this.stats.submits++;
    this.pool.afterSubmit();
  }

  /** Submits once the open batch holds `submitEvery` dispatches (called as each op ends). */
  maybeFlush(): void {
    if (this.batch && this.batch.dispatches >= this.submitEvery) this.flush();
  }

  /** Records one dispatch: uniforms into the ring, a (cached) bind group, the pipeline. */
  record<S>(shader: Shader<S>, uniforms: ArrayBuffer, buffers: GPUBuffer[], shape: S): void {
    const compiled = this.pipelines.get(shader);
    let batch = this.open();
    let offset = Math.ceil(batch.ringUsed / this.ringAlign) * this.ringAlign;
    if (offset + uniforms.byteLength > this.ringHost.byteLength) {
      this.flush();
      batch = this.open();
      offset = 0;
    }
    this.ringHost.set(new Uint8Array(uniforms), offset);
    batch.ringUsed = offset + uniforms.byteLength;
    if (!batch.pass) {
      const tm = this.timing;
      const stamp = tm && tm.used < tm.cap ? { querySet: tm.set, beginningOfPassWriteIndex: 2 * tm.used, endOfPassWriteIndex: 2 * tm.used + 1 } : undefined;
      if (stamp) tm!.used++;
      else if (tm) tm.skipped++;
      batch.pass = batch.encoder.beginComputePass(stamp ? { label: 'peftjs ops (timed)', timestampWrites: stamp } : { label: 'peftjs ops' });
    }
    if (batch.pipeline !== compiled.pipeline) {
      batch.pass.setPipeline(compiled.pipeline);
      batch.pipeline = compiled.pipeline;
    }
    batch.pass.setBindGroup(0, this.bindGroup(compiled, uniforms.byteLength, buffers), [offset]);
    const [x, y, z] = shader.dispatch(shape);
    batch.pass.dispatchWorkgroups(x, y, z);
    batch.dispatches++;
    this.stats.dispatches++;
    this.stats.kernels[compiled.id] = (this.stats.kernels[compiled.id] ?? 0) + 1;
  }

  /**
   * GPU time of the compute passes `fn` records (timestamp queries at the start and end of each pass, summed;
   * copies and clears between passes are not counted), in ms; `undefined` without `timestamp-query`. Flushes
   * before and after. At most `maxPasses` passes are stamped (256 unless asked, ≤ 2048: a query set holds at most
   * 4096 timestamps); `untimed` counts the rest. A pass is one submitted batch of dispatches, so its time includes
   * the gaps between them.
   */
  async gpuTime(fn: () => unknown, opts: { maxPasses?: number } = {}): Promise<{ ms: number | undefined; passes: number; untimed: number }> {
    this.check();
    if (!this.ctx.timestamps) {
      await fn();
      return { ms: undefined, passes: 0, untimed: 0 };
    }
    this.flush();
    const cap = Math.max(1, Math.min(2048, Math.floor(opts.maxPasses ?? 256)));
    const set = this.device.createQuerySet({ type: 'timestamp', count: 2 * cap, label: 'peftjs gpuTime' });
    const tm = { set, used: 0, cap, skipped: 0 };
    this.timing = tm;
    let passes = 0;
    try {
      await fn();
      this.flush();
    } finally {
      this.timing = undefined;
      passes = tm.used;
    }
    if (passes === 0) {
      set.destroy();
      return { ms: 0, passes: 0, untimed: tm.skipped };
    }
    const bytes = passes * 16;
    const resolve = this.device.createBuffer({ size: bytes, usage: QUERY_RESOLVE | COPY_SRC, label: 'peftjs gpuTime resolve' });
    const staging = this.device.createBuffer({ size: bytes, usage: MAP_READ | COPY_DST, label: 'peftjs gpuTime read' });
    const enc = this.device.createCommandEncoder({ label: 'peftjs gpuTime' });
    enc.resolveQuerySet(set, 0, 2 * passes, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, staging, 0, bytes);
    this.device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const ts = new BigUint64Array(staging.getMappedRange().slice(0));
    staging.unmap();
    for (const b of [staging, resolve]) b.destroy();
    set.destroy();
    let ns = 0;
    for (let i = 0; i < passes; i++) if (ts[2 * i + 1] > ts[2 * i]) ns += Number(ts[2 * i + 1] - ts[2 * i]);
    return { ms: ns / 1e6, passes, untimed: tm.skipped };
  }

  /** The bind group of (pipeline, ring, buffers), created on first use and kept in an LRU map. */
  /** A small id per GPU buffer (bind-group and bank cache keys). */
  private bufferId(b: GPUBuffer): number {
    let id = this.bufferIds.get(b);
    if (id === undefined) this.bufferIds.set(b, (id = this.nextBufferId++));
    return id;
  }

  private bindGroup(compiled: Compiled, uniformBytes: number, buffers: GPUBuffer[]): GPUBindGroup {
    let key = `${compiled.id}|${uniformBytes}`;
    for (const b of buffers) key += `|${this.bufferId(b)}`;
    let bg = this.bindGroupCache.get(key);
    if (bg) {
      this.bindGroupCache.delete(key);
    } else {
      bg = this.device.createBindGroup({
        label: compiled.id,
        layout: compiled.layout,
        entries: [
          { binding: 0, resource: { buffer: this.ring, offset: 0, size: uniformBytes } },
          ...buffers.map((buffer, i) => ({ binding: i + 1, resource: { buffer } })),
        ],
      });
      this.stats.bindGroups++;
      if (this.bindGroupCache.size >= BIND_GROUP_CACHE) this.bindGroupCache.delete(this.bindGroupCache.keys().next().value as string);
    }
    this.bindGroupCache.set(key, bg);
    return bg;
  }

  // ── Backend ─────────────────────────────────────────────────────────────────────────────────────

  /**
   * `opts.keepBf16`: a bf16 weight stays bf16 on the GPU (two per u32; the linear and embedding kernels unpack it
   * with a shift, exactly), half the memory and half the bytes a decode step streams. Otherwise bf16 is widened.
   */
  upload(t: Tensor, opts: UploadOptions = {}): Tensor {
    this.check();
    if (t.storage instanceof GpuStorage) {
      if (t.storage.owner !== this) throw new BackendError('wrong_device', 'tensor lives on another GPU backend', { detail: t.toString() });
      return t;
    }
    const { bytes, dtype } = hostBytes(t, this.f16, opts.keepBf16 === true);
    const buffer = this.pool.acquire(padded(bytes).byteLength, TENSOR_USAGE, `weight ${t.shape.join('x')} ${dtype}`);
    this.device.queue.writeBuffer(buffer, 0, padded(bytes));
    this.stats.uploads++;
    this.stats.uploadBytes += bytes.byteLength;
    // The weight keeps the bytes it came from (see GpuStorage): a view of a CPU tensor, a copy of wasm memory
    // (which growth may detach).
    return this.gpuTensor(t.shape, dtype, buffer, bytes.byteLength, t.device === 'wasm' ? bytes.slice() : bytes);
  }

  linear(x: Tensor, w: Tensor, bias: Tensor | undefined, deltas: readonly LoRADelta[], rowScale?: Tensor): Tensor {
    this.check();
    const k = x.shape[x.shape.length - 1];
    const m = x.size / k;
    if (w.ndim !== 2 || w.shape[1] !== k) throw shapeError('W', `[n, ${k}]`, w.shape, 'linear › w');
    const n = w.shape[0];
    this.checkEpilogue(n, bias, rowScale, deltas, k, 'linear');
    const call = new Call(this, 'linear');
    try {
      const xb = call.input(x, false, 'x');
      const wb = call.input(w, true, 'w', true);
      const yBytes = m * n * 4;
      const y = call.output(yBytes, `y ${m}x${n}`);
      const epi = this.epilogueBuffers(call, bias, rowScale);
      const rt = deltas.reduce((sum, d) => sum + d.a.shape[1] + (d.bias ? 1 : 0), 0);
      const b = deltas.length ? this.bOf(call, deltas) : this.unused();
      const plan = this.planLinear(m, k, n, wb.type, b.type, rt);
      const t = deltas.length ? this.shrink(call, xb, deltas, m, k, plan.ks, plan.kchunk) : { buffer: this.dummy, rows: 0 };
      const u = uniforms([m, n, k, t.rows, epi.hasBias, epi.hasRowScale, plan.route === 'gemv' ? plan.loraMode : plan.ks, plan.route === 'gemv' ? plan.ks : 0]);
      const shape = { m, n };
      if (m > 0 && n > 0) call.dispatch(plan.shader, u, [xb.buffer, wb.buffer, epi.bias, epi.rowScale, t.buffer, b.buffer, y], shape);
      call.submit();
      return this.gpuTensor([...x.shape.slice(0, -1), n], 'f32', y, yBytes);
    } catch (e) {
      call.fail();
      throw e;
    }
  }

  /**
   * The kernels `linear` runs for a shape (never a silent choice): m ≤ gemvMaxM takes the GEMV (row blocks of
   * `gemvBlock(m)`, subgroupAdd reduction when the device has `subgroups`), larger m the register-tiled GEMM with
   * the tile `gemmTileFor(m, n)`. With adapters (t of width rt = Σ ranks + lora-bias columns) one lora_shrink per
   * adapter runs first, split into `ks` k-chunks whose partials the GEMV/GEMM sums (GEMV with rt > FUSED_MAX_R: ks = 1).
   */
  private planLinear(m: number, k: number, n: number, w: StorageType, b: StorageType, rt: number) {
    const vec = k > 0 && k % 4 === 0;
    if (m <= this.gemvMaxM) {
      const staged = rt <= K.FUSED_MAX_R;
      const { ks, kchunk } = K.shrinkSplit(m, k, staged);
      const maxM = K.gemvBlock(m);
      const shader: Shader<{ m: number; n: number }> = K.linearGemv({ maxM, subgroups: this.subgroups, vec, w, b });
      return { route: 'gemv' as const, shader, ks, kchunk, loraMode: rt === 0 ? 0 : staged ? 1 : 2, tile: `rows ${maxM}×${K.GEMV_ROWS}, ${K.gemvThreads({ maxM, subgroups: this.subgroups })} invocations` };
    }
    const { ks, kchunk } = K.shrinkSplit(m, k, true);
    const tile = this.gemmTile ?? K.gemmTileFor(m, n);
    return { route: 'gemm' as const, shader: K.linearGemmTiled({ tile, vec, w, b }), ks, kchunk, loraMode: rt === 0 ? 0 : 1, tile: `${tile.name} ${tile.bm}×64, ${tile.tm}×4 per invocation, BK ${tile.bk}` };
  }

  /**
   * Which kernels `linear` runs for x [m, k] · W [n, k] (W stored as `w`, default f32) with `ranks` adapters:
   * the route, the pipeline ids (as counted in `stats.kernels`), the tile, whether subgroups reduce, the k split
   * of the shrink and the dispatches per forward (B packs of stacked adapters, built once, not counted).
   */
  kernelFor(op: 'linear', m: number, k: number, n: number, opts: { w?: StorageType; ranks?: readonly number[] } = {}) {
    if (op !== 'linear') throw new BackendError('shape_mismatch', 'kernelFor reports linear only', { expected: 'linear', got: op });
    const ranks = opts.ranks ?? [];
    const rt = ranks.reduce((a, r) => a + r, 0);
    const b: StorageType = 'f32';
    const plan = this.planLinear(m, k, n, opts.w ?? 'f32', b, rt);
    const kernels = [...(ranks.length ? [`lora_shrink[${K.loraShrink({ a_t: 'f32' }).key}]`] : []), `${plan.shader.name}[${plan.shader.key}]`];
    return { route: plan.route, kernels, tile: plan.tile, subgroups: plan.route === 'gemv' && this.subgroups, ks: ranks.length ? plan.ks : 0, dispatches: ranks.length + 1 };
  }

  quantizedLinear(x: Tensor, q: QuantizedWeight, bias: Tensor | undefined, deltas: readonly LoRADelta[], rowScale?: Tensor): Tensor {
    this.check();
    const { k, n, bits, groupSize } = q;
    const xk = x.shape[x.shape.length - 1];
    if (xk !== k) throw shapeError('x', `[m, ${k}]`, x.shape, 'quantizedLinear › x');
    if ((bits !== 4 && bits !== 8) || k % groupSize !== 0 || (k * bits) % 32 !== 0) {
      throw new BackendError('shape_mismatch', 'quantised weight layout not supported', {
        expected: 'bits 4 or 8, k a multiple of groupSize and of 32/bits',
        got: { bits, groupSize, k },
        where: 'quantizedLinear',
      });
    }
    if (q.w.size !== (n * k * bits) / 32) throw shapeError('packed W', `[${n}, ${(k * bits) / 32}] u32`, q.w.shape, 'quantizedLinear › w');
    const groups = n * (k / groupSize);
    if (q.scales.size !== groups || q.biases.size !== groups) {
      throw shapeError('scales/biases', `[${n}, ${k / groupSize}]`, [q.scales.shape, q.biases.shape], 'quantizedLinear');
    }
    this.checkEpilogue(n, bias, rowScale, deltas, k, 'quantizedLinear');
    const m = x.size / k;
    const call = new Call(this, 'quantizedLinear');
    try {
      const xb = call.input(x, false, 'x');
      const wb = call.input(q.w, false, 'w');
      let sc = call.input(q.scales, true, 'scales');
      let bi = call.input(q.biases, true, 'biases');
      if (sc.type !== bi.type) {
        // Mixed storage (one f16 on the GPU, one f32): read both as f32.
        sc = sc.type === 'f16' ? call.input(q.scales, false, 'scales') : sc;
        bi = bi.type === 'f16' ? call.input(q.biases, false, 'biases') : bi;
        if (sc.type !== bi.type) throw new BackendError('dtype_unsupported', 'scales and biases differ in dtype', { got: [q.scales.dtype, q.biases.dtype] });
      }
      const yBytes = m * n * 4;
      const y = call.output(yBytes, `y ${m}x${n}`);
      const epi = this.epilogueBuffers(call, bias, rowScale);
      const t = deltas.length ? this.shrink(call, xb, deltas, m, k, 1, k) : { buffer: this.dummy, rows: 0 };
      const b = deltas.length ? this.bOf(call, deltas) : this.unused();
      const shader = K.quantizedLinear({ sb_t: sc.type, b_t: b.type });
      const u = uniforms([m, n, k, t.rows, epi.hasBias, epi.hasRowScale, bits, groupSize]);
      call.dispatch(shader, u, [xb.buffer, wb.buffer, sc.buffer, bi.buffer, epi.bias, epi.rowScale, t.buffer, b.buffer, y], { m, n });
      call.submit();
      return this.gpuTensor([...x.shape.slice(0, -1), n], 'f32', y, yBytes);
    } catch (e) {
      call.fail();
      throw e;
    }
  }

  /**
   * Routes, SGMV-style as on wasm: one route for the whole batch is the plain `linear` / `quantizedLinear` (its fused
   * epilogue). Several routes: the base product once for the whole batch (W read once, whatever the number of
   * adapters), then `sgmv` applies every row's adapters in two dispatches. A row stacking a DoRA adapter with others
   * takes one `sgmv` per later pass, over its group's rows, with that pass's gain; the bias comes with the last pass.
   */
  linearRouted(x: Tensor, w: LinearWeight, bias: Tensor | undefined, route: Route): Tensor {
    this.check();
    const q = isQuantized(w) ? w : undefined;
    const [n, k] = q ? [q.n, q.k] : (w as Tensor).shape;
    const xk = x.shape[x.shape.length - 1];
    if (xk !== k) throw shapeError('x', `[m, ${k}]`, x.shape, 'linearRouted › x');
    const m = x.size / k;
    checkRoute(route, m, k, n, 'WebGPUBackend.linearRouted');
    if (bias && bias.size !== n) throw shapeError('bias', `[${n}]`, bias.shape, 'linearRouted › bias');
    const groups = routeGroups(route).map((g) => ({ ...g, passes: routePasses(g.terms) }));
    const one = groups.length === 1 ? groups[0].passes : undefined;
    // A host x read again after the base product: one upload, shared by every pass (a host write per pass would
    // flush the shared encoder each time its pooled buffer is still in flight).
    const again = one ? one.length > 1 : groups.some((g) => g.passes.length);
    const xg = !again || x.storage instanceof GpuStorage ? x : this.upload(x);
    const base = (b: Tensor | undefined, deltas: readonly LoRADelta[], rs?: Tensor) =>
      q ? this.quantizedLinear(xg, q, b, deltas, rs) : this.linear(xg, w as Tensor, b, deltas, rs);
    try {
      return this.routedPasses(xg, k, bias, groups, one, base);
    } finally {
      if (xg !== x) xg.dispose();
    }
  }

  /** linearRouted's work after the checks: the base product, then the adapter passes (see there). */
  private routedPasses(
    x: Tensor,
    k: number,
    bias: Tensor | undefined,
    groups: readonly { rows: number[]; passes: ReturnType<typeof routePasses> }[],
    one: ReturnType<typeof routePasses> | undefined,
    base: (b: Tensor | undefined, deltas: readonly LoRADelta[], rs?: Tensor) => Tensor,
  ): Tensor {
    const y = one ? base(one.length > 1 ? undefined : bias, one[0]?.deltas ?? [], one[0]?.rowScale) : base(undefined, []);
    try {
      const last = (passes: readonly unknown[], i: number) => (i === passes.length - 1 ? bias : undefined);
      if (one) {
        const all = Array.from({ length: x.size / k }, (_, i) => i);
        one.forEach((pass, i) => i > 0 && this.sgmv(y, x, k, last(one, i), pass.rowScale, [{ rows: all, deltas: pass.deltas }]));
        return y;
      }
      if (groups.every((g) => g.passes.length <= 1 && !g.passes[0]?.rowScale)) {
        this.sgmv(y, x, k, bias, undefined, groups.map((g) => ({ rows: g.rows, deltas: g.passes[0]?.deltas ?? [] })));
        return y;
      }
      for (const g of groups) {
        if (!g.passes.length && bias) this.sgmv(y, x, k, bias, undefined, [{ rows: g.rows, deltas: [] }]);
        g.passes.forEach((pass, i) => this.sgmv(y, x, k, last(g.passes, i), pass.rowScale, [{ rows: g.rows, deltas: pass.deltas }]));
      }
      return y;
    } catch (e) {
      y.dispose();
      throw e;
    }
  }

  /**
   * Rows `groups[g].rows` of y [·,n] ← rowScale ⊙ (y + Σ s·(x·A)·B + Σ s·bias over `groups[g].deltas`) + bias, in two
   * dispatches whatever the number of distinct adapters: `sgmv_shrink` over (row, adapter) pairs, then `sgmv_expand`
   * (shaders/sgmv.wgsl.ts). x is the whole batch: a group's rows index it as they index y.
   * The distinct A's and B's (+ lora-bias rows) are stacked in two f32 banks, cached while they stay resident; the
   * row, term and pair tables go up in one write.
   */
  private sgmv(
    y: Tensor,
    x: Tensor,
    k: number,
    bias: Tensor | undefined,
    rowScale: Tensor | undefined,
    groups: readonly { rows: readonly number[]; deltas: readonly LoRADelta[] }[],
  ): void {
    const n = y.shape[y.shape.length - 1];
    const m = groups.reduce((c, g) => c + g.rows.length, 0); // rows of the table
    const aParts: Tensor[] = [];
    const aOff = new Map<Tensor, number>();
    const bParts: Tensor[] = [];
    const bOff = new Map<Tensor, { bias?: Tensor; off: number }[]>();
    let aTotal = 0;
    let bTotal = 0;
    const place = (d: LoRADelta) => {
      if (!aOff.has(d.a)) {
        aOff.set(d.a, aTotal);
        aParts.push(d.a);
        aTotal += d.a.size;
      }
      const list = bOff.get(d.b) ?? [];
      let e = list.find((q) => q.bias === d.bias);
      if (!e) {
        e = { bias: d.bias, off: bTotal };
        list.push(e);
        bOff.set(d.b, list);
        bParts.push(d.b, ...(d.bias ? [d.bias] : []));
        bTotal += d.b.size + (d.bias?.size ?? 0);
      }
      return { a: aOff.get(d.a) as number, b: e.off, r: d.a.shape[1], lb: d.bias ? 1 : 0, scale: d.scale };
    };
    const groupTerms = groups.map((g) => g.deltas.map(place));
    const termCount = groupTerms.reduce((s, t) => s + t.length, 0);
    const pairCount = groups.reduce((s, g, gi) => s + g.rows.length * groupTerms[gi].length, 0);
    // Tables: rows [m][4] (in group order, each naming its row of x and y) | terms [T][4] | pairs [P][8].
    const termOff = 4 * m;
    const pairOff = termOff + 4 * termCount;
    const tab = new Uint32Array(pairOff + 8 * pairCount);
    const tabF = new Float32Array(tab.buffer);
    let term = 0;
    let pair = 0;
    let tTotal = 0;
    let r = 0;
    groups.forEach((g, gi) => {
      const ts = groupTerms[gi];
      ts.forEach((t, e) => tab.set([t.b, t.r, t.lb, 0], termOff + 4 * (term + e)));
      for (const row of g.rows) {
        tab.set([tTotal, term, ts.length, row], 4 * r++);
        for (const t of ts) {
          const p = pairOff + 8 * pair++;
          tab.set([row, t.a, t.r, tTotal, 0, t.lb], p);
          tabF[p + 4] = t.scale;
          tTotal += t.r + t.lb;
        }
      }
      term += ts.length;
    });
    const tabT = this.upload(Tensor.from(tab, [tab.length], 'u32'));
    const call = new Call(this, 'linearRouted › sgmv');
    try {
      const yb = call.target(y, 'y');
      const xb = call.input(x, false, 'x');
      const a = aParts.length ? this.bank(call, aParts, 'sgmv A bank', true) : this.dummy;
      const b = bParts.length ? this.bank(call, bParts, 'sgmv B bank', true) : this.dummy;
      const t = call.scratch(Math.max(1, tTotal), 'sgmv t');
      const tb = (tabT.storage as GpuStorage).buffer;
      if (pairCount > 0) call.dispatch(K.sgmvShrink(), uniforms([pairCount, k, pairOff, 0]), [xb.buffer, a, tb, t], { pairs: pairCount });
      const epi = this.epilogueBuffers(call, bias, rowScale);
      const u = uniforms([m, n, epi.hasBias, termOff, epi.hasRowScale, 0, 0, 0]);
      if (m * n > 0) call.dispatch(K.sgmvExpand(), u, [epi.bias, epi.rowScale, t, b, tb, yb], { count: m * n });
      call.submit();
    } catch (e) {
      call.fail();
      throw e;
    } finally {
      tabT.dispose();
    }
  }

  /** The f32 stack of `parts` (one `lora_pack` each): cached while every part is resident (`capped`: LRU of MAX_BANKS). */
  private bank(call: Call, parts: readonly Tensor[], label: string, capped: boolean): GPUBuffer {
    const resident = parts.every((p) => p.storage instanceof GpuStorage && (p.storage as GpuStorage).owner === this);
    const bufs = resident ? parts.map((p) => (p.storage as GpuStorage).buffer) : [];
    const key = bufs.map((buf) => this.bufferId(buf)).join(',');
    const hit = resident ? this.banks.get(key) : undefined;
    if (hit) {
      this.banks.delete(key); // most recent last
      this.banks.set(key, hit);
      return hit.buffer;
    }
    const total = parts.reduce((s, p) => s + p.size, 0);
    const buffer = resident ? this.pool.acquireGpu(total * 4, TENSOR_USAGE, label) : call.scratch(total, label);
    let off = 0;
    parts.forEach((p, i) => {
      const src = call.input(p, true, `${label} part ${i}`);
      call.dispatch(K.loraPack({ src_t: src.type }), uniforms([p.size, off, 0, 0]), [src.buffer, buffer], { count: p.size });
      off += p.size;
    });
    if (resident) {
      this.banks.set(key, { buffer, parts: bufs, capped });
      for (const p of bufs) {
        const users = this.bankUsers.get(p) ?? new Set<string>();
        users.add(key);
        this.bankUsers.set(p, users);
      }
      const routed = [...this.banks].filter(([, b]) => b.capped);
      if (capped && routed.length > MAX_BANKS) this.dropBank(routed[0][0]);
    }
    return buffer;
  }

  private dropBank(key: string): void {
    const bank = this.banks.get(key);
    if (!bank) return;
    this.banks.delete(key);
    this.pool.release(bank.buffer);
    for (const p of bank.parts) {
      const users = this.bankUsers.get(p);
      users?.delete(key);
      if (users?.size === 0) this.bankUsers.delete(p);
    }
  }

  embedding(ids: Tensor, table: Tensor, deltas: readonly LoRADelta[]): Tensor {
    this.check();
    if (ids.dtype !== 'i32' && ids.dtype !== 'u32') throw new BackendError('dtype_unsupported', 'ids must be integers', { expected: 'i32', got: ids.dtype, where: 'embedding › ids' });
    if (table.ndim !== 2) throw shapeError('table', '[vocab, dim]', table.shape, 'embedding › table');
    const [vocab, dim] = table.shape;
    for (const [i, d] of deltas.entries()) {
      if (d.a.shape[0] !== vocab || d.b.shape[1] !== dim || d.a.shape[1] !== d.b.shape[0]) {
        throw shapeError(`delta ${i}`, `A [${vocab}, r], B [r, ${dim}]`, [d.a.shape, d.b.shape], 'embedding');
      }
    }
    const m = ids.size;
    const call = new Call(this, 'embedding');
    try {
      const idb = call.input(ids, false, 'ids');
      const eb = call.input(table, true, 'table', true);
      const yBytes = m * dim * 4;
      const y = call.output(yBytes, `y ${m}x${dim}`);
      const passes = deltas.length ? deltas : [undefined];
      passes.forEach((d, i) => {
        const a = d ? call.input(d.a, true, `lora A[${i}]`) : this.unused();
        const b = d ? call.input(d.b, true, `lora B[${i}]`) : this.unused();
        const shader = K.embedding({ e_t: eb.type, a_t: a.type, b_t: b.type });
        const u = uniforms([m, dim, vocab, d ? d.a.shape[1] : 0, i > 0 ? 1 : 0, 0], { 5: d?.scale ?? 0 });
        call.dispatch(shader, u, [idb.buffer, eb.buffer, a.buffer, b.buffer, y], { m, dim });
      });
      call.submit();
      return this.gpuTensor([...ids.shape, dim], 'f32', y, yBytes);
    } catch (e) {
      call.fail();
      throw e;
    }
  }

  // ── transformer ops (WGSL twins of cpu-ops.ts; shaders/norm, rope, elementwise, strided_copy, attention) ──

  /** A zero-filled f32 tensor (a clear command in the batch). */
  zeros(shape: readonly number[]): Tensor {
    this.check();
    const n = shape.reduce((a, b) => a * b, 1);
    if (!shape.every((d) => Number.isInteger(d) && d >= 0)) throw shapeError('zeros', 'non-negative integer dims', shape, 'zeros');
    const buffer = this.pool.acquireGpu(Math.max(4, n * 4), TENSOR_USAGE, `zeros ${shape.join('x')}`);
    const batch = this.open();
    this.endPass(batch);
    batch.encoder.clearBuffer(buffer);
    return this.gpuTensor(shape, 'f32', buffer, n * 4);
  }

  rmsNorm(x: Tensor, w: Tensor, eps: number): Tensor {
    return this.norm('rmsNorm', x, w, undefined, eps);
  }

  layerNorm(x: Tensor, w: Tensor, b: Tensor, eps: number): Tensor {
    if (b.size !== w.size) throw shapeError('b', `[${w.size}]`, b.shape, 'layerNorm › b');
    return this.norm('layerNorm', x, w, b, eps);
  }

  rope(x: Tensor, cos: Tensor, sin: Tensor, heads: number, headDim: number, start: number): void {
    this.check();
    const width = heads * headDim;
    const m = this.rowsOf(x, width, 'rope');
    const half = this.ropeTables('rope', cos, sin, headDim, start, m);
    this.op('rope', (call) => {
      const xb = call.target(x, 'x');
      const cb = call.input(cos, false, 'cos');
      const sb = call.input(sin, false, 'sin');
      call.dispatch(K.rope(), uniforms([m, heads, headDim, start]), [xb, cb.buffer, sb.buffer], { count: m * heads * half });
    });
  }

  addInPlace(a: Tensor, b: Tensor): void {
    this.check();
    if (a.size !== b.size) throw shapeError('b', `${a.size} elements`, b.shape, 'addInPlace');
    this.op('addInPlace', (call) => {
      const ab = call.target(a, 'a');
      const bb = this.apartFrom(call, call.input(b, false, 'b').buffer, ab, a.size, 'b');
      call.dispatch(K.addInPlace(), uniforms([a.size, 0, 0, 0]), [ab, bb], { count: a.size });
    });
  }

  addRmsNorm(x: Tensor, o: Tensor, w: Tensor, eps: number): Tensor {
    return this.addNorm('addRmsNorm', x, o, w, undefined, eps);
  }

  addLayerNorm(x: Tensor, o: Tensor, w: Tensor, b: Tensor, eps: number): Tensor {
    if (b.size !== w.size) throw shapeError('b', `[${w.size}]`, b.shape, 'addLayerNorm › b');
    return this.addNorm('addLayerNorm', x, o, w, b, eps);
  }

  ropeKvWrite(q: Tensor, k: Tensor, v: Tensor, cos: Tensor, sin: Tensor, kCache: Tensor, vCache: Tensor, start: number, shape: AttentionShape): void {
    this.check();
    const { heads, kvHeads, headDim: hd } = shape;
    const m = this.rowsOf(q, heads * hd, 'ropeKvWrite');
    if (this.rowsOf(k, kvHeads * hd, 'ropeKvWrite') !== m || this.rowsOf(v, kvHeads * hd, 'ropeKvWrite') !== m) {
      throw shapeError('k, v', `[${m}, ${kvHeads * hd}]`, { k: k.shape, v: v.shape }, 'ropeKvWrite');
    }
    const half = this.ropeTables('ropeKvWrite', cos, sin, hd, start, m);
    const maxLen = this.cacheLength('ropeKvWrite', kCache, vCache, kvHeads, hd, start, m);
    this.op('ropeKvWrite', (call) => {
      const qb = call.target(q, 'q');
      const kc = call.target(kCache, 'kCache');
      const vc = call.target(vCache, 'vCache');
      const kb = call.input(k, false, 'k').buffer;
      const vb = call.input(v, false, 'v').buffer;
      const bufs = [qb, kc, vc, kb, vb];
      if (new Set(bufs).size !== bufs.length) throw new BackendError('shape_mismatch', 'ropeKvWrite: q, k, v and the two caches must be five distinct tensors', { where: 'ropeKvWrite' });
      const cb = call.input(cos, false, 'cos');
      const sb = call.input(sin, false, 'sin');
      const count = m * (heads + kvHeads) * half + m * kvHeads * hd;
      if (count > 0) call.dispatch(K.ropeKv(), uniforms([m, heads, kvHeads, hd, start, maxLen, 0, 0]), [qb, kb, vb, cb.buffer, sb.buffer, kc, vc], { count });
    });
  }

  swiglu(g: Tensor, u: Tensor): Tensor {
    this.check();
    if (g.size !== u.size) throw shapeError('u', `${g.size} elements`, u.shape, 'swiglu');
    return this.activation('swiglu', 0, g, u);
  }

  geluTanh(x: Tensor): Tensor {
    this.check();
    return this.activation('geluTanh', 1, x, undefined);
  }

  sliceColumns(x: Tensor, start: number, width: number): Tensor {
    this.check();
    const c = x.shape[x.shape.length - 1];
    if (!(Number.isInteger(start) && Number.isInteger(width) && start >= 0 && width >= 0 && start + width <= c)) {
      throw new BackendError('shape_mismatch', 'sliceColumns out of range', { expected: `start + width ≤ ${c}`, got: { start, width }, where: 'sliceColumns' });
    }
    const m = c === 0 ? 0 : x.size / c;
    return this.op('sliceColumns', (call) => {
      const xb = call.input(x, false, 'x');
      const y = call.output(m * width * 4, `y ${m}x${width}`);
      this.copy(call, xb.buffer, y, { na: m, nb: 1, nt: width, srcOff: start, srcA: c, srcB: 0, dstOff: 0, dstA: width, dstB: 0 });
      return this.gpuTensor([...x.shape.slice(0, -1), width], 'f32', y, m * width * 4);
    });
  }

  sliceRows(x: Tensor, start: number, count: number): Tensor {
    this.check();
    const c = x.shape[x.shape.length - 1];
    const m = c === 0 ? 0 : x.size / c;
    if (!(Number.isInteger(start) && Number.isInteger(count) && start >= 0 && count >= 0 && start + count <= m)) {
      throw new BackendError('shape_mismatch', 'sliceRows out of range', { expected: `start + count ≤ ${m}`, got: { start, count }, where: 'sliceRows' });
    }
    return this.op('sliceRows', (call) => {
      const xb = call.input(x, false, 'x');
      const y = call.output(count * c * 4, `y ${count}x${c}`);
      this.copy(call, xb.buffer, y, { na: 1, nb: 1, nt: count * c, srcOff: start * c, srcA: 0, srcB: 0, dstOff: 0, dstA: 0, dstB: 0 });
      return this.gpuTensor([count, c], 'f32', y, count * c * 4);
    });
  }

  kvWrite(cache: Tensor, src: Tensor, start: number, kvHeads: number, headDim: number): void {
    this.check();
    const width = kvHeads * headDim;
    const m = this.rowsOf(src, width, 'kvWrite');
    const maxLen = width === 0 ? 0 : cache.size / width;
    if (!Number.isInteger(maxLen) || !Number.isInteger(start) || start < 0 || start + m > maxLen) {
      throw new BackendError('shape_mismatch', 'kvWrite past the end of the cache', { expected: `cache [${kvHeads}, maxLen, ${headDim}], start + m ≤ maxLen`, got: { cache: cache.shape, start, m }, where: 'kvWrite' });
    }
    this.op('kvWrite', (call) => {
      const cb = call.target(cache, 'cache');
      const sb = call.input(src, false, 'src');
      if (sb.buffer === cb) throw new BackendError('shape_mismatch', 'kvWrite: src is the cache itself', { where: 'kvWrite' });
      this.copy(call, sb.buffer, cb, { na: m, nb: kvHeads, nt: headDim, srcOff: 0, srcA: width, srcB: headDim, dstOff: start * headDim, dstA: headDim, dstB: maxLen * headDim });
    });
  }

  splitQkvKvWrite(qkv: Tensor, kCache: Tensor, vCache: Tensor, start: number, shape: AttentionShape): Tensor {
    this.check();
    const { heads, kvHeads, headDim: hd } = shape;
    const [qw, kw] = [heads * hd, kvHeads * hd];
    const m = this.rowsOf(qkv, qw + 2 * kw, 'splitQkvKvWrite');
    const maxLen = this.cacheLength('splitQkvKvWrite', kCache, vCache, kvHeads, hd, start, m);
    return this.op('splitQkvKvWrite', (call) => {
      const kc = call.target(kCache, 'kCache');
      const vc = call.target(vCache, 'vCache');
      const xb = call.input(qkv, false, 'qkv').buffer;
      if (new Set([kc, vc, xb]).size !== 3) throw new BackendError('shape_mismatch', 'splitQkvKvWrite: qkv and the two caches must be three distinct tensors', { where: 'splitQkvKvWrite' });
      const q = call.output(m * qw * 4, `q ${m}x${qw}`);
      if (m > 0) call.dispatch(K.splitQkv(), uniforms([m, qw, kw, hd, start, maxLen, 0, 0]), [xb, q, kc, vc], { count: m * (qw + 2 * kw) });
      return this.gpuTensor([m, qw], 'f32', q, m * qw * 4);
    });
  }

  attention(q: Tensor, kCache: Tensor, vCache: Tensor, start: number, shape: AttentionShape, scale: number): Tensor {
    this.check();
    const { heads, kvHeads, headDim: hd } = shape;
    const width = heads * hd;
    const m = this.rowsOf(q, width, 'attention');
    const maxLen = kvHeads * hd === 0 ? 0 : kCache.size / (kvHeads * hd);
    if (!(heads > 0 && kvHeads > 0 && heads % kvHeads === 0) || !Number.isInteger(maxLen) || vCache.size !== kCache.size || !Number.isInteger(start) || start < 0 || start + m > maxLen) {
      throw new BackendError('shape_mismatch', 'attention: bad head counts or positions past the cache', {
        expected: `heads % kvHeads = 0, caches [${kvHeads}, maxLen, ${hd}], start + m ≤ maxLen`,
        got: { heads, kvHeads, k: kCache.shape, v: vCache.shape, end: start + m },
        where: 'attention',
      });
    }
    if (!(hd >= 1 && hd <= K.ATTENTION_MAX_HEAD_DIM)) throw shapeError('headDim', `1 … ${K.ATTENTION_MAX_HEAD_DIM}`, hd, 'attention');
    return this.op('attention', (call) => {
      const qb = call.input(q, false, 'q');
      const kb = call.input(kCache, false, 'kCache');
      const vb = call.input(vCache, false, 'vCache');
      const y = call.output(q.size * 4, `y ${m}x${width}`);
      const u = uniforms([m, heads, hd, maxLen, start, heads / kvHeads, 0, 0], { 6: scale });
      if (m > 0) call.dispatch(K.attention(), u, [qb.buffer, kb.buffer, vb.buffer, y], { pairs: m * heads });
      return this.gpuTensor(q.shape, 'f32', y, q.size * 4);
    });
  }

  /** Frees pooled buffers and pipelines; destroys the device if this backend created it. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.batch = undefined;
    this.bindGroupCache.clear();
    this.banks.clear();
    this.bankUsers.clear();
    this.pool.destroy();
    this.pipelines.clear();
    if (this.ctx.ownsDevice) this.device.destroy();
  }

  // ── helpers ─────────────────────────────────────────────────────────────────────────────────────

  /** Runs one op's recording in a Call: ends it (maybe submitting), or fails it and rethrows. */
  private op<T>(label: string, body: (call: Call) => T): T {
    const call = new Call(this, label);
    try {
      const out = body(call);
      call.submit();
      return out;
    } catch (e) {
      call.fail();
      throw e;
    }
  }

  /** Rows of x when its last dimension is `width` (a typed error otherwise). */
  private rowsOf(x: Tensor, width: number, op: string): number {
    const last = x.shape[x.shape.length - 1];
    if (x.ndim < 1 || last !== width) throw shapeError('x', `[m, ${width}]`, x.shape, op);
    return width === 0 ? 0 : x.size / width;
  }

  private norm(op: string, x: Tensor, w: Tensor, b: Tensor | undefined, eps: number): Tensor {
    this.check();
    const d = w.size;
    const m = this.rowsOf(x, d, op);
    return this.op(op, (call) => {
      const xb = call.input(x, false, 'x');
      const wb = call.input(w, false, 'w');
      const bb = b ? call.input(b, false, 'b').buffer : this.dummy;
      const y = call.output(x.size * 4, `y ${m}x${d}`);
      if (m > 0 && d > 0) call.dispatch(K.norm(), uniforms([m, d, b ? 1 : 0, 0], { 3: eps }), [xb.buffer, wb.buffer, bb, y], { m });
      return this.gpuTensor(x.shape, 'f32', y, x.size * 4);
    });
  }

  /** `x += o` in place, then RMSNorm (no b) or LayerNorm of the sum: one add_norm dispatch. */
  private addNorm(op: string, x: Tensor, o: Tensor, w: Tensor, b: Tensor | undefined, eps: number): Tensor {
    this.check();
    const d = w.size;
    const m = this.rowsOf(x, d, op);
    if (o.size !== x.size) throw shapeError('o', `${x.size} elements`, o.shape, op);
    return this.op(op, (call) => {
      const xb = call.target(x, 'x');
      const ob = this.apartFrom(call, call.input(o, false, 'o').buffer, xb, x.size, 'o');
      const wb = call.input(w, false, 'w');
      const bb = b ? call.input(b, false, 'b').buffer : this.dummy;
      const y = call.output(x.size * 4, `y ${m}x${d}`);
      if (m > 0 && d > 0) call.dispatch(K.addNorm(), uniforms([m, d, b ? 1 : 0, 0], { 3: eps }), [xb, ob, wb.buffer, bb, y], { m });
      return this.gpuTensor(x.shape, 'f32', y, x.size * 4);
    });
  }

  private activation(op: string, mode: number, g: Tensor, u: Tensor | undefined): Tensor {
    return this.op(op, (call) => {
      const gb = call.input(g, false, 'x');
      const ub = u ? call.input(u, false, 'u').buffer : this.dummy;
      const y = call.output(g.size * 4, `y ${g.shape.join('x')}`);
      if (g.size > 0) call.dispatch(K.activation(), uniforms([g.size, mode, 0, 0]), [gb.buffer, ub, y], { count: g.size });
      return this.gpuTensor(g.shape, 'f32', y, g.size * 4);
    });
  }

  /**
   * `src`, or a scratch copy of its first `floats` when it is the written buffer itself (a += a): a buffer cannot be
   * bound read-write and read-only in one dispatch.
   */
  private apartFrom(call: Call, src: GPUBuffer, written: GPUBuffer, floats: number, what: string): GPUBuffer {
    if (src !== written) return src;
    const copy = call.scratch(floats, `${what} copy`);
    this.copy(call, src, copy, { na: 1, nb: 1, nt: floats, srcOff: 0, srcA: 0, srcB: 0, dstOff: 0, dstA: 0, dstB: 0 });
    return copy;
  }

  /** maxLen of head-major caches [kvHeads, maxLen, hd] that positions start … start+m−1 fit in (a typed error otherwise). */
  private cacheLength(op: string, kCache: Tensor, vCache: Tensor, kvHeads: number, hd: number, start: number, m: number): number {
    const maxLen = kCache.size / (kvHeads * hd);
    if (!(kvHeads * hd > 0) || !Number.isInteger(maxLen) || vCache.size !== kCache.size || !Number.isInteger(start) || start < 0 || start + m > maxLen) {
      throw new BackendError('shape_mismatch', `${op} past the end of the cache`, { expected: `caches [${kvHeads}, maxLen, ${hd}], start + m ≤ maxLen`, got: { k: kCache.shape, v: vCache.shape, start, m }, where: op });
    }
    return maxLen;
  }

  /** cos/sin [maxPos, hd/2] cover positions start … start+m−1, hd even (typed errors otherwise); returns hd/2. */
  private ropeTables(op: string, cos: Tensor, sin: Tensor, hd: number, start: number, m: number): number {
    const half = hd / 2;
    if (!Number.isInteger(half) || half < 1) throw shapeError('headDim', 'an even number ≥ 2', hd, op);
    for (const [t, what] of [[cos, 'cos'], [sin, 'sin']] as const) {
      if (t.ndim !== 2 || t.shape[1] !== half || !Number.isInteger(start) || start < 0 || start + m > t.shape[0]) {
        throw new BackendError('shape_mismatch', `${op}: the cos/sin tables do not cover these positions`, { expected: `[≥ ${start + m}, ${half}]`, got: t.shape, where: `${op} › ${what}` });
      }
    }
    return half;
  }

  /** One strided_copy dispatch (see its WGSL for the index map); nothing when the copy is empty. */
  private copy(call: Call, src: GPUBuffer, dst: GPUBuffer, c: { na: number; nb: number; nt: number; srcOff: number; srcA: number; srcB: number; dstOff: number; dstA: number; dstB: number }): void {
    const count = c.na * c.nb * c.nt;
    if (count === 0) return;
    const u = uniforms([c.na, c.nb, c.nt, c.srcOff, c.srcA, c.srcB, c.dstOff, c.dstA, c.dstB]);
    call.dispatch(K.stridedCopy(), u, [src, dst], { count });
  }

  private unused(): Bound {
    return { buffer: this.dummy, type: 'f32' };
  }

  private checkEpilogue(n: number, bias: Tensor | undefined, rowScale: Tensor | undefined, deltas: readonly LoRADelta[], k: number, op: string): void {
    if (bias && bias.size !== n) throw shapeError('bias', `[${n}]`, bias.shape, `${op} › bias`);
    if (rowScale && rowScale.size !== n) throw shapeError('rowScale', `[${n}]`, rowScale.shape, `${op} › rowScale`);
    for (const [i, d] of deltas.entries()) {
      const r = d.a.shape[1];
      if (d.a.ndim !== 2 || d.a.shape[0] !== k || d.b.ndim !== 2 || d.b.shape[0] !== r || d.b.shape[1] !== n) {
        throw shapeError(`delta ${i}`, `A [${k}, r], B [r, ${n}]`, [d.a.shape, d.b.shape], `${op} › deltas[${i}]`);
      }
      if (d.bias && d.bias.size !== n) throw shapeError(`delta ${i} bias`, `[${n}]`, d.bias.shape, `${op} › deltas[${i}].bias`);
    }
  }

  private epilogueBuffers(call: Call, bias: Tensor | undefined, rowScale: Tensor | undefined) {
    return {
      bias: bias ? call.input(bias, false, 'bias').buffer : this.dummy,
      rowScale: rowScale ? call.input(rowScale, false, 'rowScale').buffer : this.dummy,
      hasBias: bias ? 1 : 0,
      hasRowScale: rowScale ? 1 : 0,
    };
  }

  /**
   * t [ks, m, R] = the stacked sᵢ·x·Aᵢ (plus an sᵢ column per lora bias), as ks k-chunk partials the consumer sums
   * (ks = 1: the plain [m, R]): one `lora_shrink` dispatch per adapter.
   */
  private shrink(call: Call, xb: Bound, deltas: readonly LoRADelta[], m: number, k: number, ks: number, kchunk: number): { buffer: GPUBuffer; rows: number } {
    const rows = deltas.reduce((s, d) => s + d.a.shape[1] + (d.bias ? 1 : 0), 0);
    const t = call.scratch(ks * m * rows, 'lora t');
    let off = 0;
    deltas.forEach((d, i) => {
      const a = call.input(d.a, true, `lora A[${i}]`);
      const r = d.a.shape[1];
      const lb = d.bias ? 1 : 0;
      const u = uniforms([m, k, r, rows, off, lb, 0, ks, kchunk, 0, 0, 0], { 6: d.scale });
      if (m > 0) call.dispatch(K.loraShrink({ a_t: a.type }), u, [xb.buffer, a.buffer, t], { groups: m * ks });
      off += r + lb;
    });
    return { buffer: t, rows };
  }

  /** B as the expand reads it: one adapter without bias binds its B directly; otherwise the cached f32 stack. */
  private bOf(call: Call, deltas: readonly LoRADelta[]): Bound {
    if (deltas.length === 1 && !deltas[0].bias) return call.input(deltas[0].b, true, 'lora B');
    return { buffer: this.bank(call, deltas.flatMap((d) => (d.bias ? [d.b, d.bias] : [d.b])), 'lora B stacked', false), type: 'f32' };
  }

}

