import { BackendError } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { Tensor as T } from '../tensor.js';

/**
 * Host-side float helpers for the few places that read or rewrite weights (fuse, DoRA's norm,
 * quantisation): values go through float64 and are rounded once to the weight's dtype.
 * Not for the forward path: that is the backend's.
 */

export { bf16ToNumber, f16ToNumber, numberToBf16, numberToF16, toF64 } from '../float16.js';
import { numberToBf16, numberToF16 } from '../float16.js';

/** A new CPU tensor of `dtype` (f64/f32/f16/bf16) holding `values`, each rounded once. */
export function fromF64(values: Float64Array, shape: readonly number[], dtype: Tensor['dtype']): Tensor {
  switch (dtype) {
    case 'f64':
      return T.from(Float64Array.from(values), shape, 'f64');
    case 'f32':
      return T.from(Float32Array.from(values), shape, 'f32');
    case 'f16':
      return T.from(Uint16Array.from(values, numberToF16), shape, 'f16');
    case 'bf16':
      return T.from(Uint16Array.from(values, numberToBf16), shape, 'bf16');
    default:
      throw new BackendError('dtype_unsupported', 'not a float dtype', { expected: 'f64, f32, f16 or bf16', got: dtype, where: 'fromF64' });
  }
}

export const FLOAT_DTYPES: readonly Tensor['dtype'][] = ['f64', 'f32', 'f16', 'bf16'];
