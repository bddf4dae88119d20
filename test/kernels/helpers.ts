import { expect } from 'vitest';

/** Deterministic PRNG (mulberry32) so a failing case reproduces. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n f32 values uniform in [-1, 1). */
export function randomF32(rand: () => number, n: number): Float32Array<ArrayBuffer> {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rand() * 2 - 1;
  return a;
}

export const EPS32 = 2 ** -23;

/**
 * Checks |got[i] − ref[i]| ≤ tol(i) for all i; on failure prints the first bad index, ref, got, max error and shape.
 */
export function expectClose(got: ArrayLike<number>, ref: ArrayLike<number>, tol: (i: number) => number, shape: string): void {
  expect(got.length, `length for ${shape}`).toBe(ref.length);
  let first = -1;
  let maxErr = 0;
  let bad = 0;
  for (let i = 0; i < ref.length; i++) {
    const err = Math.abs(got[i] - ref[i]);
    const ok = err <= tol(i) || (Number.isNaN(ref[i]) && Number.isNaN(got[i]));
    if (!ok || Number.isNaN(err)) {
      if (!(Number.isNaN(ref[i]) && Number.isNaN(got[i]))) {
        bad++;
        if (first < 0) first = i;
      }
    }
    if (err > maxErr) maxErr = err;
  }
  if (bad) {
    throw new Error(
      `${bad} mismatches, first bad index ${first}: ref ${ref[first]}, got ${got[first]}, tol ${tol(first)}, max error ${maxErr}, shape ${shape}`,
    );
  }
}

/**
 * float64 y = x·Wᵀ (+ bias) for x [m,k], W [n,k] row-major, and Σ|terms| per element (the scale of the f32 bound):
 * the reference the linear kernels are checked against.
 */
export function linearReference(x: ArrayLike<number>, w: ArrayLike<number>, m: number, n: number, k: number, bias?: ArrayLike<number>): { ref: Float64Array; mag: Float64Array } {
  const ref = new Float64Array(m * n);
  const mag = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let acc = 0;
      let abs = 0;
      for (let p = 0; p < k; p++) {
        acc += x[i * k + p] * w[j * k + p];
        abs += Math.abs(x[i * k + p] * w[j * k + p]);
      }
      ref[i * n + j] = acc + (bias ? bias[j] : 0);
      mag[i * n + j] = abs + (bias ? Math.abs(bias[j]) : 0);
    }
  return { ref, mag };
}
