/**
 * WGSL twin of cpp/linear.h `f32_gemm` + cpp/lora.h `f32_lora_expand`: a tiled GEMM with the LoRA expand,
 * DoRA row scale and bias fused into the epilogue.
 *
 *   y = row_scale ⊙ (x·Wᵀ + t·B) + bias        x [m,k] f32, W [n,k], t [m,r] f32, B [r,n], y [m,n] f32
 *
 * `t = Σᵢ sᵢ·x·Aᵢ` comes from `lora_shrink` (a lora-bias is one more column of t holding sᵢ, with the bias as
 * the matching row of B). r = 0 is "adapter off": the epilogue loop runs zero times, so the base result is
 * exactly what the plain GEMM produces. Workgroup-shared tiles of x and W; one output per invocation;
 * f32 accumulation whatever the storage type of W and B (`w_t`, `b_t` become f16 with `shader-f16`; `w_t` bf16
 * for a W kept as bf16).
 */
export const LINEAR_GEMM_WGSL = /* wgsl */ `
alias w_t = f32;
alias b_t = f32;

struct Uniforms {
  m: u32,
  n: u32,
  k: u32,
  r: u32,
  has_bias: u32,
  has_row_scale: u32,
  _pad0: u32,
  _pad1: u32,
}

// Tile shape: TILE_M x TILE_N outputs per workgroup, TILE_K along k per step (one invocation per output).
override TILE_M: u32 = 16u;
override TILE_N: u32 = 16u;
override TILE_K: u32 = 16u;

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<w_t>;
// W[i] as f32 (bf16 storage: two per u32, see specialize in pipelines.ts).
fn load_w(i: u32) -> f32 { return f32(w[i]); }
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> row_scale: array<f32>;
@group(0) @binding(5) var<storage, read> t: array<f32>;
@group(0) @binding(6) var<storage, read> b: array<b_t>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;

var<workgroup> x_tile: array<f32, TILE_M * TILE_K>;
var<workgroup> w_tile: array<f32, TILE_N * TILE_K>;

@compute @workgroup_size(TILE_N, TILE_M, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let col = wg.x * TILE_N + lid.x;
  let row = wg.y * TILE_M + lid.y;
  let flat = lid.y * TILE_N + lid.x;
  let threads = TILE_M * TILE_N;

  var acc = 0.0;
  for (var k0 = 0u; k0 < u.k; k0 += TILE_K) {
    // Stage x[wg rows, k0..k0+TILE_K) and W[wg cols, k0..k0+TILE_K); zero outside the matrix.
    for (var i = flat; i < TILE_M * TILE_K; i += threads) {
      let gr = wg.y * TILE_M + i / TILE_K;
      let gk = k0 + i % TILE_K;
      var v = 0.0;
      if (gr < u.m && gk < u.k) { v = x[gr * u.k + gk]; }
      x_tile[i] = v;
    }
    for (var i = flat; i < TILE_N * TILE_K; i += threads) {
      let gn = wg.x * TILE_N + i / TILE_K;
      let gk = k0 + i % TILE_K;
      var v = 0.0;
      if (gn < u.n && gk < u.k) { v = load_w(gn * u.k + gk); }
      w_tile[i] = v;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TILE_K; kk++) {
      acc += x_tile[lid.y * TILE_K + kk] * w_tile[lid.x * TILE_K + kk];
    }
    workgroupBarrier();
  }

  if (row < u.m && col < u.n) {
    // LoRA expand: + t·B (r = 0 when the adapter is off).
    for (var j = 0u; j < u.r; j++) {
      acc += t[row * u.r + j] * f32(b[j * u.n + col]);
    }
    if (u.has_row_scale != 0u) { acc *= row_scale[col]; }
    if (u.has_bias != 0u) { acc += bias[col]; }
    y[row * u.n + col] = acc;
  }
}
`;
