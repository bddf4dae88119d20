/// <reference types="@webgpu/types" />
/**
 * GPUBuffer pool keyed by (rounded size, usage). The backend records ops into one shared command encoder and
 * submits it now and then (see `Batch` in backend.ts), so a released buffer may still be read by commands
 * recorded but not yet submitted. Two ways out follow from WebGPU's ordering rules:
 * - `acquire` (any use, including `queue.writeBuffer`): only buffers freed at a past submit. A write through the
 *   queue lands before every command of the open batch, so it must not hit a buffer that batch still reads.
 *   When none is free but one of the size is waiting, the pool asks its owner to submit (`onStarved`) rather
 *   than allocate: allocation stays bounded however long the batch.
 * - `acquireGpu` (written only by commands recorded after this call): a buffer released in the open batch is
 *   reused at once, since commands in one encoder run in order.
 * Leak tests read `bytesInUse`, `bytesAllocated` and `buffersCreated`.
 */
import { BackendError } from '../../errors.js';

/** Sizes are rounded up to this granule so near-equal requests share buffers (and writes stay 4-byte aligned). */
const SIZE_GRANULE = 256;

export function roundSize(bytes: number): number {
  return Math.max(SIZE_GRANULE, Math.ceil(bytes / SIZE_GRANULE) * SIZE_GRANULE);
}

export type PoolErrorSink = (e: BackendError) => void;

export class BufferPool {
  private readonly free = new Map<string, GPUBuffer[]>();
  /** Released since the last submit, by key. */
  private pending = new Map<string, GPUBuffer[]>();
  private readonly live = new Set<GPUBuffer>();
  /** Bytes of every buffer this pool created and has not destroyed (in use, pending or free). */
  bytesAllocated = 0;
  /** Bytes of buffers handed out and not yet released. */
  bytesInUse = 0;
  /** How many times `device.createBuffer` ran. */
  buffersCreated = 0;

  constructor(
    private readonly device: GPUDevice,
    private readonly onError: PoolErrorSink,
    /** Submits the open batch (then calls `afterSubmit`); called when only a waiting buffer would fit. */
    private readonly onStarved: () => void = () => undefined,
  ) {}

  /** A buffer of at least `bytes` bytes with exactly `usage`, safe for `queue.writeBuffer`; reused when one is free. */
  acquire(bytes: number, usage: GPUBufferUsageFlags, label: string): GPUBuffer {
    const size = roundSize(bytes);
    const key = `${size}:${usage}`;
    if (!this.free.get(key)?.length && this.pending.get(key)?.length) this.onStarved();
    return this.take(this.free.get(key)?.pop(), size, usage, label);
  }

  /**
   * A buffer that only commands recorded from now on write (op outputs, scratch): one released in the open
   * batch first (its earlier readers run before those commands), else as `acquire`.
   */
  acquireGpu(bytes: number, usage: GPUBufferUsageFlags, label: string): GPUBuffer {
    const size = roundSize(bytes);
    const key = `${size}:${usage}`;
    return this.take(this.pending.get(key)?.pop() ?? this.free.get(key)?.pop(), size, usage, label);
  }

  private take(found: GPUBuffer | undefined, size: number, usage: GPUBufferUsageFlags, label: string): GPUBuffer {
    let buf = found;
    if (buf) {
      buf.label = label;
    } else {
      const max = this.device.limits.maxBufferSize;
      if (size > max) {
        throw new BackendError('gpu_out_of_memory', 'buffer larger than the device allows', {
          expected: `≤ ${max} bytes (maxBufferSize)`,
          got: size,
          where: label,
        });
      }
      this.device.pushErrorScope('out-of-memory');
      buf = this.device.createBuffer({ label, size, usage });
      void this.device.popErrorScope().then(
        (err) => {
          if (err) this.onError(new BackendError('gpu_out_of_memory', 'GPU out of memory', { got: size, detail: err.message, where: label }));
        },
        () => undefined,
      );
      this.buffersCreated++;
      this.bytesAllocated += size;
      this.live.add(buf);
    }
    this.bytesInUse += size;
    return buf;
  }

  /** Queues `buf` for reuse: by `acquireGpu` at once, by `acquire` after the next submit. */
  release(buf: GPUBuffer): void {
    this.bytesInUse -= buf.size;
    const key = `${buf.size}:${buf.usage}`;
    let list = this.pending.get(key);
    if (!list) this.pending.set(key, (list = []));
    list.push(buf);
  }

  /** Returns a buffer no recorded command references (a mapped-and-read staging buffer) straight to the free list. */
  releaseIdle(buf: GPUBuffer): void {
    this.bytesInUse -= buf.size;
    const key = `${buf.size}:${buf.usage}`;
    let list = this.free.get(key);
    if (!list) this.free.set(key, (list = []));
    list.push(buf);
  }

  /** Call right after `queue.submit` of the batch: released buffers become free for any use. */
  afterSubmit(): void {
    for (const [key, bufs] of this.pending) {
      let list = this.free.get(key);
      if (!list) this.free.set(key, (list = []));
      list.push(...bufs);
    }
    this.pending.clear();
  }

  /** Destroys free buffers (keeps those in use). */
  trim(): void {
    for (const list of this.free.values()) {
      for (const buf of list) {
        this.bytesAllocated -= buf.size;
        this.live.delete(buf);
        buf.destroy();
      }
    }
    this.free.clear();
  }

  /** Destroys every buffer this pool created. */
  destroy(): void {
    for (const buf of this.live) buf.destroy();
    this.live.clear();
    this.free.clear();
    this.pending.clear();
    this.bytesAllocated = 0;
    this.bytesInUse = 0;
  }
}
