/// <reference types="@webgpu/types" />
/**
 * WebGPUBackend: the Backend interface on WGSL kernels. Tensors it returns live in GPUBuffers (GpuStorage)
 * and stay there between layers; `await t.read()` is the only readback. Weights are uploaded once
 * (`upload`), every other buffer comes from the pool, each pipeline is compiled once per storage-type
 * variant. Adapter toggle and scale are uniforms: empty `deltas` runs the base kernel alone (r = 0), a
 * changed scale is a new uniform value — no pipeline, no allocation, no upload.
 *
 * Dispatches per layer: linear off 1; on, m ≤ 4 with one adapter 1 (fused GEMV); otherwise
 * (one shrink per adapter) + 1. quantizedLinear and embedding: 1 off, adapters + 1 / adapters on.
 */
import type { DType } from '../../dtype.js';
import { BackendError } from '../../errors.js';
import { Tensor } from '../../tensor.js';
import { isQuantized, routeGroups, routePasses, type AttentionShape, type Backend, type LinearWeight, type LoRADelta, type QuantizedWeight, type Route, type UploadOptions } from '../backend.js';
import { checkRoute } from '../js.js';
import { toF64 } from '../../float16.js';
import { BufferPool } from './buffer-pool.js';
import { widen16 } from './convert.js';
import { assertAlive, type GpuContext, type WebGPUOptions } from './device.js';
import { GpuStorage, type GpuOwner } from './gpu-storage.js';
import * as K from './kernels.js';
import { PipelineCache, type Shader, type StorageType } from './pipelines.js';

// GPUBufferUsage values (spelled out so this module loads where the global is missing).
const MAP_READ = 0x0001;
const COPY_SRC = 0x0004;
const COPY_DST = 0x0008;
const UNIFORM = 0x0040;
const STORAGE = 0x0080;
const TENSOR_USAGE = STORAGE | COPY_SRC | COPY_DST;

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
}

/** A buffer bound to a kernel and the element type the kernel must read it as. */
interface Bound {
  buffer: GPUBuffer;
  type: StorageType;
}

/** The stacked B of several adapters (and lora-bias rows), packed to f32 once and reused. */
interface Packed {
  parts: readonly Tensor[];
  buffer: GPUBuffer;
  rows: number;
}

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

/** One op (internal): its command encoder, one compute pass, and the pooled buffers to release after submit. */
export class Call {
  private readonly encoder: GPUCommandEncoder;
  private readonly pass: GPUComputePassEncoder;
  readonly temps: GPUBuffer[] = [];
  private readonly outputs: GPUBuffer[] = [];
  private recorded = 0;

  constructor(
    private readonly be: WebGPUBackend,
    readonly label: string,
  ) {
    this.encoder = be.device.createCommandEncoder({ label });
    this.pass = this.encoder.beginComputePass({ label });
  }

  /**
   * A non-GPU tensor copied into a pooled buffer for this call; a GPU tensor bound as is. A resident bf16 weight
   * (uploaded with keepBf16) binds as bf16 where the kernel reads it through its loader (`bf16Ok`: W of linear,
   * the embedding table); anywhere else it is a typed error.
   */
  input(t: Tensor, keepF16: boolean, what: string, bf16Ok = false): Bound {
    if (t.storage instanceof GpuStorage) {
      if (t.storage.owner !== this.be) {
        throw new BackendError('wrong_device', 'tensor lives on another GPU backend', { where: `${this.label} › ${what}` });
      }
      if (t.storage.disposed) throw new BackendError('wrong_device', 'tensor was disposed', { where: `${this.label} › ${what}` });
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

  /** The op's output buffer (kept after submit; released only if the call fails). */
  output(bytes: number, what: string): GPUBuffer {
    const buffer = this.be.pool.acquire(bytes, TENSOR_USAGE, `${this.label} ${what}`);
    this.outputs.push(buffer);
    return buffer;
  }

  /**
   * The call threw before its main dispatch. Work already recorded (a cached B pack or f32 copy) is still
   * submitted so the caches hold real data; the output and temporaries go back to the pool.
   */
  fail(): void {
    if (this.recorded > 0) {
      try {
        this.submit();
      } catch {
        // the original error is the one to report
      }
    }
    this.temps.push(...this.outputs);
    this.outputs.length = 0;
    this.done();
  }

  /** A pooled f32 scratch buffer released after submit. */
  scratch(floats: number, what: string): GPUBuffer {
    const buffer = this.be.pool.acquire(Math.max(4, floats * 4), TENSOR_USAGE, `${this.label} › ${what}`);
    this.temps.push(buffer);
    return buffer;
  }

  dispatch<S>(shader: Shader<S>, uniforms: ArrayBuffer, buffers: GPUBuffer[], shape: S): void {
    const be = this.be;
    const pipeline = be.pipelines.get(shader);
    const ub = be.pool.acquire(uniforms.byteLength, UNIFORM | COPY_DST, `${shader.name} uniforms`);
    be.device.queue.writeBuffer(ub, 0, uniforms);
    this.temps.push(ub);
    const bindGroup = be.device.createBindGroup({
      label: shader.name,
      layout: pipeline.getBindGroupLayout(0),
      entries: [ub, ...buffers].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    this.pass.setPipeline(pipeline);
    this.pass.setBindGroup(0, bindGroup);
    const [x, y, z] = shader.dispatch(shape);
    this.pass.dispatchWorkgroups(x, y, z);
    this.recorded++;
    be.stats.dispatches++;
  }

  submit(): void {
    this.pass.end();
    this.be.device.queue.submit([this.encoder.finish()]);
    this.be.stats.submits++;
    this.done();
  }

  /** Releases the temporaries (after submit, or when the call failed before it). */
  done(): void {
    for (const b of this.temps) this.be.pool.release(b);
    this.temps.length = 0;
    this.be.pool.afterSubmit();
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
  readonly stats: WebGPUStats = { dispatches: 0, submits: 0, uploads: 0, uploadBytes: 0, inputUploads: 0, readbacks: 0 };
  readonly device: GPUDevice;
  readonly pool: BufferPool;
  readonly pipelines: PipelineCache;
  /** f16 weights stay f16 on the device (`shader-f16`). */
  readonly f16: boolean;
  /** Largest m that takes the GEMV kernels. */
  readonly gemvMaxM: number;
  private readonly dummy: GPUBuffer;
  private asyncError: BackendError | undefined;
  private readonly packs = new WeakMap<Tensor, Packed>();
  private readonly f32Copies = new Map<GPUBuffer, GPUBuffer>();
  private disposed = false;

  constructor(
    readonly ctx: GpuContext,
    opts: WebGPUOptions = {},
  ) {
    this.device = ctx.device;
    this.f16 = ctx.f16;
    this.gemvMaxM = Math.min(opts.gemvMaxM ?? K.GEMV_MAX_M, K.GEMV_MAX_M);
    const sink = (e: BackendError) => {
      this.asyncError ??= e;
    };
    this.pool = new BufferPool(this.device, sink);
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
      copy = this.pool.acquire(count * 4, TENSOR_USAGE, `${what} (f32 copy)`);
      call.dispatch(K.loraPack({ src_t: 'f16' }), uniforms([count, 0, 0, 0]), [src, copy], { count });
      this.f32Copies.set(src, copy);
    }
    return copy;
  }

  async readBack(buffer: GPUBuffer, byteLength: number): Promise<Uint8Array> {
    this.check();
    const size = Math.ceil(byteLength / 4) * 4;
    const staging = this.pool.acquire(size, MAP_READ | COPY_DST, `${buffer.label} (readback)`);
    const enc = this.device.createCommandEncoder({ label: 'peftjs readback' });
    enc.copyBufferToBuffer(buffer, 0, staging, 0, size);
    this.device.queue.submit([enc.finish()]);
    this.pool.afterSubmit();
    this.stats.submits++;
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
    this.pool.release(staging);
    this.check();
    return out;
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
      if (m <= this.gemvMaxM) {
        const single = deltas.length === 1 && deltas[0].a.shape[1] + (deltas[0].bias ? 1 : 0) <= K.FUSED_MAX_R ? deltas[0] : undefined;
        if (deltas.length === 0 || single) {
          // One dispatch: base GEMV (off), or shrink in workgroup memory + GEMV + expand (on).
          const a = single ? call.input(single.a, true, 'lora A') : this.unused();
          const b = single ? this.bOf(call, deltas) : this.unused();
          const r = single ? single.a.shape[1] : 0;
          const shader = K.linearGemv({ w_t: wb.type, a_t: a.type, b_t: b.type });
          const u = uniforms([m, n, k, r, epi.hasBias, epi.hasRowScale, single ? 1 : 0, single?.bias ? 1 : 0, 0], { 8: single?.scale ?? 0 });
          call.dispatch(shader, u, [xb.buffer, wb.buffer, epi.bias, epi.rowScale, a.buffer, this.dummy, b.buffer, y], { n, fused: single !== undefined });
        } else {
          const t = this.shrink(call, xb, deltas, m, k);
          const b = this.bOf(call, deltas);
          const shader = K.linearGemv({ w_t: wb.type, a_t: 'f32', b_t: b.type });
          const u = uniforms([m, n, k, t.rows, epi.hasBias, epi.hasRowScale, 2, 0, 0], { 8: 0 });
          call.dispatch(shader, u, [xb.buffer, wb.buffer, epi.bias, epi.rowScale, this.dummy, t.buffer, b.buffer, y], { n, fused: false });
        }
      } else {
        const t = deltas.length ? this.shrink(call, xb, deltas, m, k) : { buffer: this.dummy, rows: 0 };
        const b = deltas.length ? this.bOf(call, deltas) : this.unused();
        const shader = K.linearGemm({ w_t: wb.type, b_t: b.type });
        const u = uniforms([m, n, k, t.rows, epi.hasBias, epi.hasRowScale, 0, 0]);
        call.dispatch(shader, u, [xb.buffer, wb.buffer, epi.bias, epi.rowScale, t.buffer, b.buffer, y], { m, n });
      }
      call.submit();
      return this.gpuTensor([...x.shape.slice(0, -1), n], 'f32', y, yBytes);
    } catch (e) {
      call.fail();
      throw e;
    }
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
      const t = deltas.length ? this.shrink(call, xb, deltas, m, k) : { buffer: this.dummy, rows: 0 };
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
   * Per group of rows sharing a route: its x rows gathered (buffer copies), the `linear` / `quantizedLinear` op on
   * them, its y rows scattered into the output (buffer copies, in queue order). Correct first: a dispatch per group;
   * the shared-base SGMV form is the wasm backend's. A row stacking a DoRA with other adapters (two passes) is not
   * supported here yet (typed error).
   */
  linearRouted(x: Tensor, w: LinearWeight, bias: Tensor | undefined, route: Route): Tensor {
    this.check();
    const q = isQuantized(w) ? w : undefined;
    const [n, k] = q ? [q.n, q.k] : (w as Tensor).shape;
    const xk = x.shape[x.shape.length - 1];
    if (xk !== k) throw shapeError('x', `[m, ${k}]`, x.shape, 'linearRouted › x');
    const m = x.size / k;
    checkRoute(route, m, k, n, 'WebGPUBackend.linearRouted');
    const groups = routeGroups(route).map((g) => ({ ...g, passes: routePasses(g.terms) }));
    if (groups.some((g) => g.passes.length > 1)) {
      throw new BackendError('dtype_unsupported', 'a row stacking a DoRA adapter with other adapters is not supported on WebGPU yet', {
        expected: 'rows with LoRA adapters only, or one DoRA adapter alone',
        where: 'WebGPUBackend.linearRouted',
      });
    }
    const run = (xs: Tensor, p: (typeof groups)[number]['passes']) =>
      q ? this.quantizedLinear(xs, q, bias, p[0]?.deltas ?? [], p[0]?.rowScale) : this.linear(xs, w as Tensor, bias, p[0]?.deltas ?? [], p[0]?.rowScale);
    if (groups.length === 1) return run(x, groups[0].passes);
    const yBytes = m * n * 4;
    const y = this.pool.acquire(yBytes, TENSOR_USAGE, `linearRouted y ${m}x${n}`);
    try {
      for (const g of groups) {
        const sub = this.gatherRows(x, g.rows, k);
        const out = run(sub, g.passes);
        const enc = this.device.createCommandEncoder({ label: 'linearRouted scatter' });
        const ob = (out.storage as GpuStorage).buffer;
        g.rows.forEach((row, i) => enc.copyBufferToBuffer(ob, i * n * 4, y, row * n * 4, n * 4));
        this.device.queue.submit([enc.finish()]);
        this.stats.submits++;
        out.dispose();
        if (sub !== x) sub.dispose();
        this.pool.afterSubmit();
      }
    } catch (e) {
      this.pool.release(y);
      throw e;
    }
    return this.gpuTensor([...x.shape.slice(0, -1), n], 'f32', y, yBytes);
  }

  /** Rows `rows` of x [m,k] as a [rows.length, k] f32 tensor: host rows sliced, GPU rows copied buffer to buffer. */
  private gatherRows(x: Tensor, rows: readonly number[], k: number): Tensor {
    if (!(x.storage instanceof GpuStorage)) {
      const src = x.dtype === 'f32' ? (x.data as Float32Array) : Float32Array.from(toF64(x));
      const out = new Float32Array(rows.length * k);
      rows.forEach((row, i) => out.set(src.subarray(row * k, (row + 1) * k), i * k));
      return Tensor.from(out, [rows.length, k], 'f32');
    }
    if (x.dtype !== 'f32') throw new BackendError('dtype_unsupported', 'a routed GPU input must be f32', { got: x.dtype, where: 'WebGPUBackend.linearRouted' });
    const bytes = rows.length * k * 4;
    const buf = this.pool.acquire(bytes, TENSOR_USAGE, 'linearRouted x rows');
    const enc = this.device.createCommandEncoder({ label: 'linearRouted gather' });
    rows.forEach((row, i) => enc.copyBufferToBuffer((x.storage as GpuStorage).buffer, row * k * 4, buf, i * k * 4, k * 4));
    this.device.queue.submit([enc.finish()]);
    this.stats.submits++;
    return this.gpuTensor([rows.length, k], 'f32', buf, bytes);
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

  // ── transformer ops (WGSL twins of cpu-ops.ts: to be written) ──────────────────────────────────────
  private notYet(op: string): never {
    throw new BackendError('dtype_unsupported', 'this transformer op has no WebGPU kernel yet', { expected: 'wasm or js backend', got: 'webgpu', where: `WebGPUBackend.${op}` });
  }
  zeros(_shape: readonly number[]): Tensor {
    return this.notYet('zeros');
  }
  rmsNorm(_x: Tensor, _w: Tensor, _eps: number): Tensor {
    return this.notYet('rmsNorm');
  }
  layerNorm(_x: Tensor, _w: Tensor, _b: Tensor, _eps: number): Tensor {
    return this.notYet('layerNorm');
  }
  rope(_x: Tensor, _cos: Tensor, _sin: Tensor, _heads: number, _headDim: number, _start: number): void {
    this.notYet('rope');
  }
  addInPlace(_a: Tensor, _b: Tensor): void {
    this.notYet('addInPlace');
  }
  swiglu(_g: Tensor, _u: Tensor): Tensor {
    return this.notYet('swiglu');
  }
  geluTanh(_x: Tensor): Tensor {
    return this.notYet('geluTanh');
  }
  sliceColumns(_x: Tensor, _start: number, _width: number): Tensor {
    return this.notYet('sliceColumns');
  }
  sliceRows(_x: Tensor, _start: number, _count: number): Tensor {
    return this.notYet('sliceRows');
  }
  kvWrite(_cache: Tensor, _src: Tensor, _start: number, _kvHeads: number, _headDim: number): void {
    this.notYet('kvWrite');
  }
  attention(_q: Tensor, _k: Tensor, _v: Tensor, _start: number, _shape: AttentionShape, _scale: number): Tensor {
    return this.notYet('attention');
  }

  /** Frees pooled buffers and pipelines; destroys the device if this backend created it. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.pool.destroy();
    this.pipelines.clear();
    if (this.ctx.ownsDevice) this.device.destroy();
  }

  // ── helpers ─────────────────────────────────────────────────────────────────────────────────────

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

  /** t [m, R] = the stacked sᵢ·x·Aᵢ (plus an sᵢ column per lora bias): one `lora_shrink` dispatch per adapter. */
  private shrink(call: Call, xb: Bound, deltas: readonly LoRADelta[], m: number, k: number): { buffer: GPUBuffer; rows: number } {
    const rows = deltas.reduce((s, d) => s + d.a.shape[1] + (d.bias ? 1 : 0), 0);
    const t = call.scratch(m * rows, 'lora t');
    let off = 0;
    deltas.forEach((d, i) => {
      const a = call.input(d.a, true, `lora A[${i}]`);
      const r = d.a.shape[1];
      const lb = d.bias ? 1 : 0;
      const u = uniforms([m, k, r, rows, off, lb, 0, 0], { 6: d.scale });
      call.dispatch(K.loraShrink({ a_t: a.type }), u, [xb.buffer, a.buffer, t], { count: m * (r + lb) });
      off += r + lb;
    });
    return { buffer: t, rows };
  }

  /** B as the expand reads it: one adapter without bias binds its B directly; otherwise the cached f32 stack. */
  private bOf(call: Call, deltas: readonly LoRADelta[]): Bound {
    if (deltas.length === 1 && !deltas[0].bias) return call.input(deltas[0].b, true, 'lora B');
    const parts = deltas.flatMap((d) => (d.bias ? [d.b, d.bias] : [d.b]));
    const key = parts[0];
    const hit = this.packs.get(key);
    if (hit && hit.parts.length === parts.length && hit.parts.every((p, i) => p === parts[i])) return { buffer: hit.buffer, type: 'f32' };
    const total = parts.reduce((s, p) => s + p.size, 0);
    // Long-lived (like a weight): not a call temporary. Replaces a stale pack for the same first B.
    const buffer = this.pool.acquire(total * 4, TENSOR_USAGE, 'lora B stacked');
    if (hit) call.temps.push(hit.buffer);
    let off = 0;
    parts.forEach((p, i) => {
      const src = call.input(p, true, `lora B part ${i}`);
      call.dispatch(K.loraPack({ src_t: src.type }), uniforms([p.size, off, 0, 0]), [src.buffer, buffer], { count: p.size });
      off += p.size;
    });
    this.packs.set(key, { parts, buffer, rows: total });
    return { buffer, type: 'f32' };
  }
}

