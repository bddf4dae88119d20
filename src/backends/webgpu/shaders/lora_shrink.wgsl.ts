/**
 * WGSL twin of cpp/lora.h `f32_lora_shrink`: one adapter's columns of the stacked t, split along k.
 *
 *   t[s, i, off + j] = scale·Σ_{k ∈ chunk s} x[i,k]·A[k,j]   (j < r)     x [m,k] f32, A [k,r], t [ks, m, stride] f32
 *   t[s, i, off + r] = scale if s = 0 else 0                (lora_bias = 1: pairs with the lora-bias row of B)
 *
 * The ks partials (k chunks of `kchunk`) are summed by the consumer (linear_gemm_tiled stages them once per
 * workgroup, linear_gemv once per row block): the split gives a small-m layer m·ks workgroups instead of m, so
 * the shrink is a short dispatch next to the GEMM it decorates, and A is read once per row and chunk (not once
 * per GEMM workgroup). A workgroup per (row, chunk): its invocations take a column j of A (consecutive
 * invocations read consecutive columns of a row of A: coalesced) and a k slice; slices are summed in workgroup
 * memory. ks = 1 gives the plain [m, stride] layout (quantized_linear and the r > MAX_R GEMV read it directly).
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
  ks: u32,
  kchunk: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

override WORKGROUP: u32 = 256u;

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<a_t>;
@group(0) @binding(3) var<storage, read_write> t: array<f32>;

var<workgroup> red: array<f32, WORKGROUP>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let g = wg.y * 65535u + wg.x;
  if (g >= u.m * u.ks) { return; }
  let i = g % u.m;
  let s = g / u.m;
  let kb = s * u.kchunk;
  let ke = min(u.k, kb + u.kchunk);
  let cols = max(1u, min(u.r, WORKGROUP));
  let slices = WORKGROUP / cols;
  let jl = lid % cols;
  let sl = lid / cols;
  let base = (s * u.m + i) * u.stride + u.off;
  for (var j0 = 0u; j0 < u.r; j0 += cols) {
    let j = j0 + jl;
    var acc = 0.0;
    if (sl < slices && j < u.r) {
      for (var kk = kb + sl; kk < ke; kk += slices) { acc += x[i * u.k + kk] * f32(a[kk * u.r + j]); }
    }
    red[lid] = acc;
    workgroupBarrier();
    if (lid < cols && j < u.r) {
      var sum = 0.0;
      for (var q = 0u; q < slices; q++) { sum += red[q * cols + lid]; }
      t[base + j] = u.scale * sum;
    }
    workgroupBarrier();
  }
  if (u.lora_bias != 0u && lid == 0u) { t[base + u.r] = select(0.0, u.scale, s == 0u); }
}
`;
