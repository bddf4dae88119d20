/**
 * WGSL twin of cpp/linear.h `f32_gemv` + cpp/lora.h (shrink and expand) for decode shapes (m ≤ MAX_M):
 *
 *   y = row_scale ⊙ (x·Wᵀ + t·B) + bias        x [m,k] f32, W [n,k], A [k,r], B [r,n], y [m,n] f32
 *
 * Cooperative GEMV: a workgroup of WORKGROUP invocations computes ROWS output columns (ROWS rows of W) at a
 * time. The invocations split k with a stride of WORKGROUP — invocation `lid` reads W[row, lid],
 * W[row, lid + WORKGROUP], … — so at every step consecutive invocations read consecutive addresses of each
 * row (coalesced loads; the naive one-invocation-per-column kernel had neighbours k elements apart). Each
 * invocation keeps ROWS·MAX_M f32 partial sums in registers; they are folded into workgroup memory and
 * tree-reduced, and the epilogue (t·B expand, lora-bias column, row_scale, bias) runs on the first ROWS·m
 * invocations. Workgroups walk the ⌈n/ROWS⌉ row groups with a grid stride (`num_workgroups`), so the backend
 * picks the workgroup count: one per row group normally, fewer in fused mode to bound the per-workgroup shrink.
 *
 * lora_mode 0: adapter off, the base GEMV only. lora_mode 1 (fused, ONE dispatch per layer): every
 * workgroup first computes t = s·x·A into workgroup memory (m·r ≤ MAX_M·MAX_R values; with lora_bias = 1
 * column r of t is s, matching the lora-bias row that ends B), with the same cooperative split: invocations
 * take a column j of A (consecutive invocations read consecutive columns of a row of A — coalesced) and a
 * k slice, then the slices are summed in workgroup memory. lora_mode 2: t [m,r] was computed by
 * `lora_shrink` (stacked adapters, or r > MAX_R). f32 accumulation throughout.
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
// Output columns (rows of W) per workgroup step; kernels.ts GEMV_ROWS mirrors it. Four independent row
// loads per k step keep several memory requests in flight per invocation, and each x value loaded is reused
// ROWS times from registers.
const ROWS: u32 = 4u;
// Invocations per workgroup, splitting k. A power of two (tree reduction), at least 2, at most WebGPU's
// default 256: 256 gives each row 256 consecutive elements per step (1 KiB of f32, 512 B of f16 — whole
// cache lines / memory transactions on every vendor) and is a multiple of every SIMD width (8–64).
override WORKGROUP: u32 = 256u;

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<w_t>;
// W[i] as f32 (bf16 storage: two per u32, see specialize in pipelines.ts).
fn load_w(i: u32) -> f32 { return f32(w[i]); }
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> row_scale: array<f32>;
@group(0) @binding(5) var<storage, read> a: array<a_t>;
@group(0) @binding(6) var<storage, read> t_in: array<f32>;
@group(0) @binding(7) var<storage, read> b: array<b_t>;
@group(0) @binding(8) var<storage, read_write> y: array<f32>;

// Reduction scratch: the partial sums of the upper half of the workgroup, [ROWS·MAX_M][WORKGROUP/2]
// (8 KiB at 256; folding the upper half in first halves the memory a full [·][WORKGROUP] buffer would take).
// The fused shrink reuses it for its k-slice partials (≤ MAX_M·WORKGROUP values, which fit as ROWS ≥ 2).
var<workgroup> red: array<f32, ROWS * MAX_M * (WORKGROUP / 2u)>;
var<workgroup> t_shared: array<f32, MAX_M * MAX_R>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let half = WORKGROUP / 2u;
  let rt = u.r + u.lora_bias;  // columns of t (rank, plus one for a lora bias)

  // Shrink (fused mode): t[i,j] = s·Σ_k x[i,k]·A[k,j]; t[i,r] = s for the lora-bias column.
  if (u.lora_mode == 1u) {
    let cols = max(1u, min(u.r, WORKGROUP));  // columns of A per pass, one per invocation
    let slices = WORKGROUP / cols;           // k slices per pass
    let jl = lid % cols;
    let slice = lid / cols;
    for (var j0 = 0u; j0 < u.r; j0 += cols) {
      let j = j0 + jl;
      if (slice < slices) {
        var ts = array<f32, MAX_M>(0.0, 0.0, 0.0, 0.0);
        if (j < u.r) {
          for (var kk = slice; kk < u.k; kk += slices) {
            let av = f32(a[kk * u.r + j]);
            for (var i = 0u; i < MAX_M; i++) {
              if (i < u.m) { ts[i] += x[i * u.k + kk] * av; }
            }
          }
        }
        for (var i = 0u; i < MAX_M; i++) { red[(i * slices + slice) * cols + jl] = ts[i]; }
      }
      workgroupBarrier();
      for (var p = lid; p < u.m * cols; p += WORKGROUP) {
        let i = p / cols;
        let jj = p % cols;
        if (j0 + jj < u.r) {
          var s = 0.0;
          for (var q = 0u; q < slices; q++) { s += red[(i * slices + q) * cols + jj]; }
          t_shared[i * rt + j0 + jj] = u.scale * s;
        }
      }
      workgroupBarrier();
    }
    if (u.lora_bias != 0u && lid < u.m) { t_shared[lid * rt + u.r] = u.scale; }
  }
  workgroupBarrier();

  let groups = (u.n + ROWS - 1u) / ROWS;
  let stride = nwg.x * nwg.y;
  for (var g = wg.y * 65535u + wg.x; g < groups; g += stride) {
    let row0 = g * ROWS;

    // Strided k split: at each step the WORKGROUP invocations read WORKGROUP consecutive elements of each
    // row. Rows past n (tail group) re-read row n-1 and are never written, keeping the loop branch-free.
    var acc = array<f32, ROWS * MAX_M>();
    for (var kk = lid; kk < u.k; kk += WORKGROUP) {
      var xv = array<f32, MAX_M>(0.0, 0.0, 0.0, 0.0);
      for (var i = 0u; i < MAX_M; i++) {
        if (i < u.m) { xv[i] = x[i * u.k + kk]; }
      }
      for (var rr = 0u; rr < ROWS; rr++) {
        let wv = load_w(min(row0 + rr, u.n - 1u) * u.k + kk);
        for (var i = 0u; i < MAX_M; i++) { acc[rr * MAX_M + i] += xv[i] * wv; }
      }
    }

    // Reduce across the workgroup: fold the upper half into the lower one, then a tree in workgroup memory.
    if (lid >= half) {
      for (var p = 0u; p < ROWS * MAX_M; p++) { red[p * half + lid - half] = acc[p]; }
    }
    workgroupBarrier();
    if (lid < half) {
      for (var p = 0u; p < ROWS * MAX_M; p++) { red[p * half + lid] += acc[p]; }
    }
    workgroupBarrier();
    for (var s = half / 2u; s > 0u; s >>= 1u) {
      if (lid < s) {
        for (var p = 0u; p < ROWS * MAX_M; p++) { red[p * half + lid] += red[p * half + lid + s]; }
      }
      workgroupBarrier();
    }

    // Epilogue on the first ROWS·m invocations (consecutive invocations → consecutive columns).
    for (var p = lid; p < ROWS * u.m; p += WORKGROUP) {
      let i = p / ROWS;
      let rr = p % ROWS;
      let col = row0 + rr;
      if (col < u.n) {
        var v = red[(rr * MAX_M + i) * half];
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
    workgroupBarrier();  // red is reused by the next row group
  }
}
`;
