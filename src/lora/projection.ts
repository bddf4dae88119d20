import type { Backend } from '../backends/backend.js';
import type { Projection } from '../nn/linear.js';
import { LoRAModule } from './layer.js';

/**
 * What LoRALinear and DoRALinear share: a LoRA layer over a Projection (Linear, Conv1D or QuantizedLinear),
 * `x [m,k] → y [m,n]`, running on its base layer's backend.
 */
export abstract class LoRAProjection extends LoRAModule<Projection> {
  protected constructor(base: Projection) {
    super(base);
  }

  get backend(): Backend {
    return this.original.backend;
  }
  get k(): number {
    return this.original.k;
  }
  get n(): number {
    return this.original.n;
  }
  protected get factorDims(): readonly [number, number] {
    return [this.k, this.n];
  }
}
