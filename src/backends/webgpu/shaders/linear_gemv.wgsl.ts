/**
 * WGSL twin of cpp/linear.h `f32_gemv` + cpp/lora.h (shrink and expand) for decode shapes (m ≤ MAX_M):
 *
 *   y = row_scale ⊙ (x·Wᵀ + t·B) + bias        x [m,k] f32, W [n,k], A [k,r], B [r,n], y [m,n] f32
 *
 * lora_mode 0: adapter off, the base GEMV only. lora_mode 1 (fused, ONE dispatch per layer): every
 * workgroup first computes t = s·x·A into workgroup memory (m·r ≤ MAX_M·MAX_R values; with lora_bias = 1
 * column r of t is s, matching the lora-bias row that ends B), then the output columns. lora_mode 2: t [m,r]
 * was computed by `lora_shrink` (stacked adapters, or r > MAX_R). One invocation per output column;
 * x is staged through workgroup memory CHUNK_K values at a time. f32 accumulation.
 */
export const LINEAR_GEMV_WGSL = /* wgsl */ `
alias w_t = f32;
alias a_t = f32;
alias b_t = f32;

struct Uniforms {
  m: u32,
  n: u32,
  k: u32,
  r: u32,
  has_bias: u32,
  has_row_scale: u32,
  lora_mode: u32,
  lora_bias: u32,
  scale: f32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

// Decode rows handled by one dispatch (the backend routes larger m to linear_gemm).
const MAX_M: u32 = 4u;
// Largest rank (+1 lora-bias column) the fused mode keeps in workgroup memory.
const MAX_R: u32 = 129u;
// Output columns per workgroup (one per invocation).
override WORKGROUP: u32 = 64u;
// x values staged per step.
override CHUNK_K: u32 = 256u;

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<w_t>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> row_scale: array<f32>;
@group(0) @binding(5) var<storage, read> a: array<a_t>;
@group(0) @binding(6) var<storage, read> t_in: array<f32>;
@group(0) @binding(7) var<storage, read> b: array<b_t>;
@group(0) @binding(8) var<storage, read_write> y: array<f32>;

var<workgroup> x_chunk: array<f32, MAX_M * CHUNK_K>;
var<workgroup> t_shared: array<f32, MAX_M * MAX_R>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let col = (wg.y * 65535u + wg.x) * WORKGROUP + lid;
  let rt = u.r + u.lora_bias;  // columns of t (rank, plus one for a lora bias)

  // Shrink (fused mode): t[i,j] = s·Σ_k x[i,k]·A[k,j]; t[i,r] = s for the lora-bias column.
  if (u.lora_mode == 1u) {
    for (var p = lid; p < u.m * rt; p += WORKGROUP) {
      let i = p / rt;
      let j = p % rt;
      var s = 1.0;
      if (j < u.r) {
        s = 0.0;
        for (var kk = 0u; kk < u.k; kk++) {
          s += x[i * u.k + kk] * f32(a[kk * u.r + j]);
        }
      }
      t_shared[p] = u.scale * s;
    }
  }
  workgroupBarrier();

  var acc = array<f32, MAX_M>(0.0, 0.0, 0.0, 0.0);
  for (var k0 = 0u; k0 < u.k; k0 += CHUNK_K) {
    let len = min(CHUNK_K, u.k - k0);
    for (var p = lid; p < u.m * CHUNK_K; p += WORKGROUP) {
      let i = p / CHUNK_K;
      let kk = p % CHUNK_K;
      var v = 0.0;
      if (kk < len) { v = x[i * u.k + k0 + kk]; }
      x_chunk[p] = v;
    }
    workgroupBarrier();
    if (col < u.n) {
      for (var kk = 0u; kk < len; kk++) {
        let wv = f32(w[col * u.k + k0 + kk]);
        for (var i = 0u; i < u.m; i++) {
          acc[i] += x_chunk[i * CHUNK_K + kk] * wv;
        }
      }
    }
    workgroupBarrier();
  }

  if (col < u.n) {
    for (var i = 0u; i < u.m; i++) {
      var v = acc[i];
      // Expand: + t·B.
      if (u.lora_mode == 1u) {
        for (var j = 0u; j < rt; j++) { v += t_shared[i * rt + j] * f32(b[j * u.n + col]); }
      } else if (u.lora_mode == 2u) {
        for (var j = 0u; j < u.r; j++) { v += t_in[i * u.r + j] * f32(b[j * u.n + col]); }
      }
      if (u.has_row_scale != 0u) { v *= row_scale[col]; }
      if (u.has_bias != 0u) { v += bias[col]; }
      y[i * u.n + col] = v;
    }
  }
}
`;
