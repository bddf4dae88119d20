import type { WasmRuntime } from './wasm.js';

/**
 * One grow-only malloc'd block reused across calls (LoRA t = x·A, the epilogue descriptor, staged inputs).
 * It only ever grows to the largest request, so a steady stream of forwards — e.g. flipping an adapter
 * on and off 10,000 times — never grows wasm memory.
 */
export class ScratchArena {
  private ptr = 0;
  private size = 0;
  constructor(private readonly rt: WasmRuntime) {}

  /** A pointer to at least `bytes` bytes, valid until the next `ensure` (contents not preserved). */
  ensure(bytes: number): number {
    if (bytes > this.size) {
      this.rt.free(this.ptr);
      this.ptr = 0;
      this.size = 0;
      const size = Math.max(bytes, this.size * 2, 4096);
      this.ptr = this.rt.malloc(size);
      this.size = size;
    }
    return this.ptr;
  }

  get byteLength(): number {
    return this.size;
  }

  dispose(): void {
    this.rt.free(this.ptr);
    this.ptr = 0;
    this.size = 0;
  }
}

/** Lays out several regions in one scratch block, offsets rounded to 16 bytes (v128 loads need no alignment in wasm). */
export class ScratchLayout {
  private bytes = 0;
  /** Reserves `bytes` and returns its offset from the block start. */
  take(bytes: number): number {
    const off = this.bytes;
    this.bytes += (bytes + 15) & ~15;
    return off;
  }
  get total(): number {
    return this.bytes;
  }
}
