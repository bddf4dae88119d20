// Single-thread memory read bandwidth, measured the way a decode step reads weights: a wasm SIMD128 loop that
// loads 16-byte vectors over a buffer far larger than any cache (256 MiB by default), with 8 independent
// accumulators so the adds never bind. The module is spelled out in bytes below (no toolchain needed).

const leb = (n) => {
  const out = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
};
const section = (id, bytes) => [id, ...leb(bytes.length), ...bytes];
const str = (s) => [...leb(s.length), ...new TextEncoder().encode(s)];

/**
 * (module (memory (export "mem") PAGES)
 *   (func (export "sum") (param $p i32) (param $end i32) (result i32)   ;; $end − $p a multiple of 128
 *     (local v128 ×8)
 *     loop: acc_k = i32x4.add(acc_k, v128.load offset=16k ($p)) for k = 0…7; $p += 128; br_if loop ($p <u $end)
 *     return lane 0 of Σ acc_k))
 */
function moduleBytes(pages) {
  const V128 = 0x7b;
  const body = [];
  body.push(0x01, 0x08, V128); // 8 locals of v128 (indices 2…9)
  body.push(0x03, 0x40); // loop
  for (let k = 0; k < 8; k++) {
    body.push(0x20, 2 + k); // local.get acc_k
    body.push(0x20, 0x00); // local.get $p
    body.push(0xfd, 0x00, 0x04, ...leb(16 * k)); // v128.load align=16 offset=16k
    body.push(0xfd, 0xae, 0x01); // i32x4.add
    body.push(0x21, 2 + k); // local.set acc_k
  }
  body.push(0x20, 0x00, 0x41, ...leb(128), 0x6a, 0x22, 0x00); // $p = $p + 128 (local.tee)
  body.push(0x20, 0x01, 0x49, 0x0d, 0x00); // $p <u $end → br_if loop
  body.push(0x0b); // end loop
  body.push(0x20, 2);
  for (let k = 1; k < 8; k++) body.push(0x20, 2 + k, 0xfd, 0xae, 0x01);
  body.push(0xfd, 0x1b, 0x00); // i32x4.extract_lane 0
  body.push(0x0b); // end func
  const fn = [...leb(body.length), ...body];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [0x01, 0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f]), // type: (i32, i32) → i32
    ...section(3, [0x01, 0x00]), // one function of type 0
    ...section(5, [0x01, 0x00, ...leb(pages)]), // memory, min = pages
    ...section(7, [0x02, ...str('mem'), 0x02, 0x00, ...str('sum'), 0x00, 0x00]), // exports
    ...section(10, [0x01, ...fn]),
  ]);
}

/**
 * A bandwidth probe over `mib` MiB: `measure(passes)` → GB/s (10⁹ bytes per second) of the median pass.
 * The buffer is filled once (so every page is backed) before the first pass.
 */
export async function bandwidthProbe(mib = 256) {
  const bytes = mib * 1024 * 1024;
  const { instance } = await WebAssembly.instantiate(moduleBytes(bytes / 65536 + 1));
  const { sum, mem } = instance.exports;
  const u8 = new Uint8Array(mem.buffer, 65536, bytes);
  for (let i = 0; i < bytes; i += 4096) u8[i] = i & 0xff;
  sum(65536, 65536 + bytes); // compile to the optimising tier, fault in
  return {
    bytes,
    method: `wasm SIMD128 read loop (v128.load ×8 accumulators) over ${mib} MiB, one thread`,
    measure(passes = 5) {
      const ts = [];
      for (let i = 0; i < passes; i++) {
        const t0 = performance.now();
        sum(65536, 65536 + bytes);
        ts.push(performance.now() - t0);
      }
      ts.sort((a, b) => a - b);
      return bytes / (ts[ts.length >> 1] / 1000) / 1e9;
    },
  };
}
