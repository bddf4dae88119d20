/**
 * WGSL twin of cpp/quant.h `f32_qgemv_affine`: y = row_scale ⊙ (x·Wᵀ + t·B) + bias with W dequantised on the fly.
 *
 *   x [m,k] f32, w [n, k·bits/32] u32, scales/biases [n, k/group], t [m,r] f32 (from lora_shrink), B [r,n]
 *   W[c,j] = scales[c,g]·q + biases[c,g],  g = j / group,
 *   q = (w[c, j / (32/bits)] >> ((j % (32/bits))·bits)) & (2^bits − 1)      (MLX affine, low bits first)
 *
 * bits and group size are uniforms (they change no source). One invocation per output column and
 * ROWS rows of x (workgroup_id.y picks the row block), x staged through workgroup memory; f32 accumulation.
 */
export const QUANTIZED_LINEAR_WGSL = /* wgsl */ `
alias sb_t = f32;
alias b_t = f32;

struct Uniforms {
  m: u32,
  n: u32,
  k: u32,
  r: u32,
  has_bias: u32,
  has_row_scale: u32,
  bits: u32,
  group_size: u32,
}

// Rows of x per workgroup (each invocation keeps ROWS accumulators).
const ROWS: u32 = 4u;
// Output columns per workgroup (one per invocation).
override WORKGROUP: u32 = 64u;
// x values staged per step (a multiple of 32 keeps a packed word inside one step).
override CHUNK_K: u32 = 256u;

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> scales: array<sb_t>;
@group(0) @binding(4) var<storage, read> biases: array<sb_t>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read> row_scale: array<f32>;
@group(0) @binding(7) var<storage, read> t: array<f32>;
@group(0) @binding(8) var<storage, read> b: array<b_t>;
@group(0) @binding(9) var<storage, read_write> y: array<f32>;

var<workgroup> x_chunk: array<f32, ROWS * CHUNK_K>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let col = wg.x * WORKGROUP + lid;
  let row0 = wg.y * ROWS;
  let rows = min(ROWS, u.m - row0);
  let per_word = 32u / u.bits;
  let mask = (1u << u.bits) - 1u;
  let words_per_row = u.k / per_word;
  let groups_per_row = u.k / u.group_size;

  var acc = array<f32, ROWS>(0.0, 0.0, 0.0, 0.0);
  for (var k0 = 0u; k0 < u.k; k0 += CHUNK_K) {
    let len = min(CHUNK_K, u.k - k0);
    for (var p = lid; p < ROWS * CHUNK_K; p += WORKGROUP) {
      let i = p / CHUNK_K;
      let kk = p % CHUNK_K;
      var v = 0.0;
      if (i < rows && kk < len) { v = x[(row0 + i) * u.k + k0 + kk]; }
      x_chunk[p] = v;
    }
    workgroupBarrier();
    if (col < u.n) {
      for (var kk = 0u; kk < len; kk++) {
        let j = k0 + kk;
        let word = w[col * words_per_row + j / per_word];
        let q = (word >> ((j % per_word) * u.bits)) & mask;
        let g = col * groups_per_row + j / u.group_size;
        let wv = f32(scales[g]) * f32(q) + f32(biases[g]);
        for (var i = 0u; i < rows; i++) {
          acc[i] += x_chunk[i * CHUNK_K + kk] * wv;
        }
      }
    }
    workgroupBarrier();
  }

  if (col < u.n) {
    for (var i = 0u; i < rows; i++) {
      let row = row0 + i;
      var v = acc[i];
      for (var j = 0u; j < u.r; j++) { v += t[row * u.r + j] * f32(b[j * u.n + col]); }
      if (u.has_row_scale != 0u) { v *= row_scale[col]; }
      if (u.has_bias != 0u) { v += bias[col]; }
      y[row * u.n + col] = v;
    }
  }
}
`;
