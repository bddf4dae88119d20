import type { Backend } from '../backends/backend.js';
import { Tensor } from '../tensor.js';
import { ropeTables, type RopeSpec } from './rope.js';

/**
 * The cos/sin tables `[positions, hd/2]` resident on the backend, grown on demand (doubling, capped at the
 * model's context) so a Llama-3 context of 128k positions costs nothing until it is used.
 */
export class RopeTable {
  #cos?: Tensor;
  #sin?: Tensor;
  #rows = 0;

  constructor(
    private readonly backend: Backend,
    private readonly spec: RopeSpec,
    private readonly headDim: number,
    private readonly maxPositions: number,
  ) {}

  /** Tables covering positions `[0, n)`. */
  upTo(n: number): { cos: Tensor; sin: Tensor } {
    if (n > this.#rows || !this.#cos || !this.#sin) {
      const rows = Math.min(Math.max(n, 2 * this.#rows, 256), Math.max(this.maxPositions, n));
      const { cos, sin } = ropeTables(this.spec, this.headDim, rows);
      this.#cos?.dispose();
      this.#sin?.dispose();
      const half = this.headDim / 2;
      this.#cos = this.backend.upload(Tensor.from(cos, [rows, half], 'f32'));
      this.#sin = this.backend.upload(Tensor.from(sin, [rows, half], 'f32'));
      this.#rows = rows;
    }
    return { cos: this.#cos, sin: this.#sin! };
  }
}
