/// <reference types="@webgpu/types" />
/** Tensor storage in a GPUBuffer: stays on the device between layers, read back only by `await tensor.read()`. */
import { BackendError } from '../../errors.js';
import type { Storage } from '../../tensor.js';

/** What a GpuStorage needs from its backend. */
export interface GpuOwner {
  /** Copies `byteLength` bytes of `buffer` to a mappable buffer and returns them. */
  readBack(buffer: GPUBuffer, byteLength: number): Promise<Uint8Array>;
  release(buffer: GPUBuffer): void;
}

/**
 * An uploaded weight also keeps `host`, the very bytes it was uploaded from: weights are immutable, and fuse,
 * DoRA's norm, save and quantisation read them synchronously on the host. Activations have none: reading them
 * is `await tensor.read()`.
 */
export class GpuStorage implements Storage {
  readonly device = 'gpu' as const;
  disposed = false;

  constructor(
    readonly buffer: GPUBuffer,
    readonly byteLength: number,
    readonly owner: GpuOwner,
    readonly host?: Uint8Array,
  ) {}

  bytes(): Uint8Array {
    if (this.host) return this.host;
    throw new BackendError('wrong_device', 'GPU tensor bytes are not directly readable', {
      expected: 'await tensor.read()',
      got: 'tensor.data / storage.bytes()',
      where: this.buffer.label,
    });
  }

  read(): Promise<Uint8Array> {
    return this.owner.readBack(this.buffer, this.byteLength);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.owner.release(this.buffer);
  }
}
