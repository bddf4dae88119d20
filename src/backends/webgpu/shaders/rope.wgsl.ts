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
