/**
 * WGSL twin of cpu-ops.ts `rope`: rotary embedding in place, HF's rotate_half layout. x [m, heads·hd], row i at
 * position p = start + i, cos/sin [maxPos, hd/2]. One invocation per (row, head, j < hd/2) rotates one pair:
 *
 *   (x₁, x₂) = (x[h·hd + j], x[h·hd + j + hd/2]);  x[h·hd + j] = x₁·c − x₂·s;  x[h·hd + j + hd/2] = x₂·c + x₁·s
 */
export const ROPE_WGSL = /* wgsl */ `
struct Uniforms {
  m: u32,
  heads: u32,
  hd: u32,
  start: u32,
}

override WORKGROUP: u32 = 64u;

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> cos_t: array<f32>;
@group(0) @binding(3) var<storage, read> sin_t: array<f32>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let idx = gid.y * nwg.x * WORKGROUP + gid.x;
  let half = u.hd / 2u;
  let per_row = u.heads * half;
  if (idx >= u.m * per_row) { return; }
  let i = idx / per_row;
  let rem = idx % per_row;
  let h = rem / half;
  let j = rem % half;
  let o = i * u.heads * u.hd + h * u.hd + j;
  let t = (u.start + i) * half + j;
  let x1 = x[o];
  let x2 = x[o + half];
  let c = cos_t[t];
  let s = sin_t[t];
  x[o] = x1 * c - x2 * s;
  x[o + half] = x2 * c + x1 * s;
}
`;

/**
 * A decoder layer's rotary embedding and KV-cache write in one dispatch (rope.wgsl's rotation, strided_copy's
 * cache map). q [m, heads·hd] is rotated in place; k [m, kvHeads·hd] is rotated on its way into the head-major
 * cache kc [kvHeads, maxLen, hd]; v is copied into vc as it is. Row i is at position p = start + i. Invocations:
 *
 *   [0, nq)            one q pair (row, head, j < hd/2), as ROPE_WGSL
 *   [nq, nq + nk)      one k pair: kc[g, p, j] = k₁·c − k₂·s;  kc[g, p, j + hd/2] = k₂·c + k₁·s
 *   [nq + nk, … + nv)  one v element: vc[g, p, t] = v[i, g·hd + t]
 *
 * with nq = m·heads·hd/2, nk = m·kvHeads·hd/2, nv = m·kvHeads·hd.
 */
export const ROPE_KV_WGSL = /* wgsl */ `
struct Uniforms {
  m: u32,
  heads: u32,
  kv_heads: u32,
  hd: u32,
  start: u32,
  max_len: u32,
  _pad0: u32,
  _pad1: u32,
}

override WORKGROUP: u32 = 64u;

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var<storage, read_write> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> cos_t: array<f32>;
@group(0) @binding(5) var<storage, read> sin_t: array<f32>;
@group(0) @binding(6) var<storage, read_write> kc: array<f32>;
@group(0) @binding(7) var<storage, read_write> vc: array<f32>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let idx = gid.y * nwg.x * WORKGROUP + gid.x;
  let half = u.hd / 2u;
  let nq = u.m * u.heads * half;
  let nk = u.m * u.kv_heads * half;
  let nv = u.m * u.kv_heads * u.hd;
  if (idx < nq) {
    let per_row = u.heads * half;
    let i = idx / per_row;
    let rem = idx % per_row;
    let o = i * u.heads * u.hd + (rem / half) * u.hd + rem % half;
    let t = (u.start + i) * half + rem % half;
    let x1 = q[o];
    let x2 = q[o + half];
    let c = cos_t[t];
    let s = sin_t[t];
    q[o] = x1 * c - x2 * s;
    q[o + half] = x2 * c + x1 * s;
  } else if (idx < nq + nk) {
    let e = idx - nq;
    let per_row = u.kv_heads * half;
    let i = e / per_row;
    let rem = e % per_row;
    let g = rem / half;
    let j = rem % half;
    let o = i * u.kv_heads * u.hd + g * u.hd + j;
    let t = (u.start + i) * half + j;
    let x1 = k[o];
    let x2 = k[o + half];
    let c = cos_t[t];
    let s = sin_t[t];
    let dst = (g * u.max_len + u.start + i) * u.hd + j;
    kc[dst] = x1 * c - x2 * s;
    kc[dst + half] = x2 * c + x1 * s;
  } else if (idx < nq + nk + nv) {
    let e = idx - nq - nk;
    let per_row = u.kv_heads * u.hd;
    let i = e / per_row;
    let rem = e % per_row;
    vc[((rem / u.hd) * u.max_len + u.start + i) * u.hd + rem % u.hd] = v[e];
  }
}
`;
