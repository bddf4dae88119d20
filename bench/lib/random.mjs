// Browser-safe (no node:* imports): shared by the Node benches and the WebGPU page.

/** xorshift32 in [-scale, scale): the same weights every run, no dependency. */
export function randomF32(len, seed, scale = 1) {
  const out = new Float32Array(len);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = (s / 4294967296 - 0.5) * 2 * scale;
  }
  return out;
}
