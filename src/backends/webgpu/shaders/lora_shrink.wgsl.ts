/**
 * WGSL twin of cpp/lora.h `f32_lora_shrink`: one adapter's columns of the stacked t.
 *
 *   t[i, off + j] = s·Σ_k x[i,k]·A[k,j]   (j < r)        x [m,k] f32, A [k,r], t [m,stride] f32
 *   t[i, off + r] = s                     (lora_bias = 1: pairs with the lora-bias row appended to B)
 *
 * Used when one fused dispatch cannot hold the layer (m > 4, stacked adapters, large r); the expand runs
 * in the epilogue of linear_gemm / linear_gemv / quantized_linear. One invocation per t value.
 */
export const LORA_SHRINK_WGSL = /* wgsl */ `
alias a_t = f32;

struct Uniforms {
  m: u32,
  k: u32,
  r: u32,
  stride: u32,
  off: u32,
  lora_bias: u32,
  scale: f32,
  _pad0: u32,
}

// Invocations per workgroup (one t value each).
override WORKGROUP: u32 = 64u;

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<a_t>;
@group(0) @binding(3) var<storage, read_write> t: array<f32>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let rt = u.r + u.lora_bias;
  let p = gid.y * nwg.x * WORKGROUP + gid.x;
  if (p >= u.m * rt) { return; }
  let i = p / rt;
  let j = p % rt;
  var s = 1.0;
  if (j < u.r) {
    s = 0.0;
    for (var kk = 0u; kk < u.k; kk++) {
      s += x[i * u.k + kk] * f32(a[kk * u.r + j]);
    }
  }
  t[i * u.stride + u.off + j] = u.scale * s;
}
`;
