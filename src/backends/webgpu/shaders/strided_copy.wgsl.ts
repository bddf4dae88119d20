/**
 * A strided f32 copy over a 3-D index (a, b, t), t innermost and contiguous:
 *
 *   dst[dst_off + a·dst_a + b·dst_b + t] = src[src_off + a·src_a + b·src_b + t]     a < na, b < nb, t < nt
 *
 * It is sliceColumns (a = row, nb = 1, t = column), sliceRows (one run of rows) and kvWrite (a = row,
 * b = KV head, t = dim: src [m, kvHeads·hd] → the head-major cache [kvHeads, maxLen, hd]). One invocation per
 * element; consecutive invocations read and write consecutive addresses along t.
 */
export const STRIDED_COPY_WGSL = /* wgsl */ `
struct Uniforms {
  na: u32,
  nb: u32,
  nt: u32,
  src_off: u32,
  src_a: u32,
  src_b: u32,
  dst_off: u32,
  dst_a: u32,
  dst_b: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

override WORKGROUP: u32 = 64u;

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let idx = gid.y * nwg.x * WORKGROUP + gid.x;
  if (idx >= u.na * u.nb * u.nt) { return; }
  let t = idx % u.nt;
  let q = idx / u.nt;
  let b = q % u.nb;
  let a = q / u.nb;
  dst[u.dst_off + a * u.dst_a + b * u.dst_b + t] = src[u.src_off + a * u.src_a + b * u.src_b + t];
}
`;
