/**
 * Packs one part of a stacked B (an adapter's B [r,n], or its lora-bias [n] as one more row) into an f32
 * buffer: dst[off + i] = f32(src[i]), i < count. Runs once per set of stacked adapters (the result is
 * cached), never per forward: scales live in t, so changing them or toggling needs no repack.
 */
export const LORA_PACK_WGSL = /* wgsl */ `
alias src_t = f32;

struct Uniforms {
  count: u32,
  off: u32,
  _pad0: u32,
  _pad1: u32,
}

// Values per workgroup (one per invocation).
override WORKGROUP: u32 = 64u;

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var<storage, read> src: array<src_t>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.y * nwg.x * WORKGROUP + gid.x;
  if (i >= u.count) { return; }
  dst[u.off + i] = f32(src[i]);
}
`;
