/**
 * Host-side widening used when uploading: bf16 → f32 always, f16 → f32 without `shader-f16`.
 * The f16 decode is the float64 reference's (src/backends/js.ts), so both backends read the same values.
 */
import { f16ToNumber as halfBitsToNumber } from '../../float16.js';

/** Widens a Uint16Array of f16 or bf16 bit patterns to f32 (exact: both fit in f32). */
export function widen16(bits: Uint16Array, kind: 'f16' | 'bf16'): Float32Array {
  const out = new Float32Array(bits.length);
  if (kind === 'bf16') {
    // bf16 is the top half of an f32.
    const u32 = new Uint32Array(out.buffer);
    for (let i = 0; i < bits.length; i++) u32[i] = bits[i] << 16;
  } else {
    for (let i = 0; i < bits.length; i++) out[i] = halfBitsToNumber(bits[i]);
  }
  return out;
}
