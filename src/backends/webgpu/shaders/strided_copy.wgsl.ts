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

/**
 * A fused q|k|v projection split in one dispatch (GPT-2's c_attn): qkv [m, qw + 2·kw] with qw = heads·hd and
 * kw = kvHeads·hd → q [m, qw] (a new tensor), and k, v into the head-major caches [kvHeads, maxLen, hd] at positions
 * start + i. One invocation per element of qkv, in its order (coalesced reads):
 *
 *   c < qw:            q[i, c] = qkv[i, c]
 *   c < qw + kw:       kc[g, start + i, t] = qkv[i, c]      (c − qw = g·hd + t)
 *   else:              vc[g, start + i, t] = qkv[i, c]      (c − qw − kw = g·hd + t)
 */
export const SPLIT_QKV_WGSL = /* wgsl */ `
struct Uniforms {
  m: u32,
  qw: u32,
  kw: u32,
  hd: u32,
  start: u32,
  max_len: u32,
  _pad0: u32,
  _pad1: u32,
}

override WORKGROUP: u32 = 64u;

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> q: array<f32>;
@group(0) @binding(3) var<storage, read_write> kc: array<f32>;
@group(0) @binding(4) var<storage, read_write> vc: array<f32>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let idx = gid.y * nwg.x * WORKGROUP + gid.x;
  let width = u.qw + 2u * u.kw;
  if (idx >= u.m * width) { return; }
  let i = idx / width;
  let c = idx % width;
  let val = qkv[idx];
  if (c < u.qw) {
    q[i * u.qw + c] = val;
  } else if (c < u.qw + u.kw) {
    let e = c - u.qw;
    kc[((e / u.hd) * u.max_len + u.start + i) * u.hd + e % u.hd] = val;
  } else {
    let e = c - u.qw - u.kw;
    vc[((e / u.hd) * u.max_len + u.start + i) * u.hd + e % u.hd] = val;
  }
}
`;
