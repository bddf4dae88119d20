// The SIMD128 multiply-add peak of one core: what a linear layer's k-loop could reach if loads cost nothing. A wasm
// loop of 12 independent chains acc_i = acc_i·c + b (f32x4.mul then f32x4.add, as the SIMD128 kernels of every
// library here: SIMD128 has no fused multiply-add), 8 FLOP per pair. The product depends on the chain, so no
// compiler can hoist it out of the loop; 12 chains cover the pair's latency on the cores seen (a C build with
// independent products, acc += x·w as a GEMM tile, measured the same). The module is spelled out in bytes below
// (lib/wasm-bytes.mjs), like lib/bandwidth.mjs.

import { leb, section, str } from './wasm-bytes.mjs';
const CHAINS = 12;

/**
 * (func (export "run") (param $n i32) (param $b f32) (param $c f32) (result f32)
 *   (local $vb v128) (local $vc v128) (local $acc v128 ×12)
 *   loop: acc_i = f32x4.add(f32x4.mul(acc_i, $vc), $vb) for i < 12; br_if loop (--$n ≠ 0)
 *   return lane 0 of Σ acc_i)
 */
function moduleBytes() {
  const body = [0x01, 2 + CHAINS, 0x7b]; // locals 3 … 16: $vb, $vc, then the accumulators (zero-initialised)
  body.push(0x20, 0x01, 0xfd, 0x13, 0x21, 0x03); // $vb = f32x4.splat($b)
  body.push(0x20, 0x02, 0xfd, 0x13, 0x21, 0x04); // $vc = f32x4.splat($c)
  body.push(0x03, 0x40); // loop
  for (let i = 0; i < CHAINS; i++) {
    body.push(0x20, 5 + i, 0x20, 0x04, 0xfd, 0xe6, 0x01); // acc_i · $vc
    body.push(0x20, 0x03, 0xfd, 0xe4, 0x01, 0x21, 5 + i); // + $vb → acc_i
  }
  body.push(0x20, 0x00, 0x41, 0x01, 0x6b, 0x22, 0x00, 0x0d, 0x00); // br_if loop (($n = $n − 1) ≠ 0)
  body.push(0x0b); // end loop
  body.push(0x20, 5);
  for (let i = 1; i < CHAINS; i++) body.push(0x20, 5 + i, 0xfd, 0xe4, 0x01);
  body.push(0xfd, 0x1f, 0x00, 0x0b); // f32x4.extract_lane 0; end
  const fn = [...leb(body.length), ...body];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [0x01, 0x60, 0x03, 0x7f, 0x7d, 0x7d, 0x01, 0x7d]), // type: (i32, f32, f32) → f32
    ...section(3, [0x01, 0x00]),
    ...section(7, [0x01, ...str('run'), 0x00, 0x00]),
    ...section(10, [0x01, ...fn]),
  ]);
}

/** `measure(ms)` → GFLOP/s: the best of repeated 2²⁰-turn runs over about `ms` milliseconds. */
export async function peakProbe() {
  const { instance } = await WebAssembly.instantiate(moduleBytes());
  const { run } = instance.exports;
  const turns = 1 << 20;
  run(turns, 0.5, 0.999); // optimising tier
  return {
    method: `wasm SIMD128 loop, ${CHAINS} independent acc = acc·c + b chains (f32x4.mul + f32x4.add), one thread, best run`,
    measure(ms = 300) {
      let best = 0;
      const end = performance.now() + ms;
      do {
        const t0 = performance.now();
        run(turns, 0.5, 0.999);
        best = Math.max(best, (turns * CHAINS * 8) / ((performance.now() - t0) / 1000) / 1e9);
      } while (performance.now() < end);
      return best;
    },
  };
}
