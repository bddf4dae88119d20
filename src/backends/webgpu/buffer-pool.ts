/// <reference types="@webgpu/types" />
/**
 * GPUBuffer pool keyed by (rounded size, usage). `release` only queues a buffer: it returns to the free list
 * at the next `afterSubmit()`, because commands already encoded (not yet submitted) may still read it while
 * a `queue.writeBuffer` for its next owner would land before them. Leak tests read `bytesInUse`,
 * `bytesAllocated` and `buffersCreated`.
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
  private pending: GPUBuffer[] = [];
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
  ) {}

  /** A buffer of at least `bytes` bytes with exactly `usage`; reused when one is free. */
  acquire(bytes: number, usage: GPUBufferUsageFlags, label: string): GPUBuffer {
    const size = roundSize(bytes);
    const key = `${size}:${usage}`;
    const list = this.free.get(key);
    let buf = list?.pop();
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

  /** Queues `buf` for reuse after the next submit. */
  release(buf: GPUBuffer): void {
    this.bytesInUse -= buf.size;
    this.pending.push(buf);
  }

  /** Call right after `queue.submit`: released buffers become reusable. */
  afterSubmit(): void {
    for (const buf of this.pending) {
      const key = `${buf.size}:${buf.usage}`;
      let list = this.free.get(key);
      if (!list) this.free.set(key, (list = []));
      list.push(buf);
    }
    this.pending = [];
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
    this.pending = [];
    this.bytesAllocated = 0;
    this.bytesInUse = 0;
  }
}
