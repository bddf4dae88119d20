/**
 * WGSL twin of cpu-ops.ts `attention`: causal grouped-query attention over a head-major KV cache.
 * q [m, heads·hd]; row i is at position p = start + i; k, v [kvHeads, maxLen, hd]; head h reads KV head h / group.
 *
 *   out[i, h] = Σ_{j ≤ p} softmax_j(scale · q[i,h]·k[g,j]) · v[g,j]
 *
 * One workgroup per (row, head). Keys are visited in chunks of CHUNK (one per invocation), in order 0 … p, with
 * an online softmax: per chunk, each invocation scores its key (a sequential dot product over hd), the chunk
 * max is tree-reduced, the running sum and the output accumulators are rescaled by e^(old max − new max), and
 * each invocation adds the chunk's weighted V rows to the output dims it owns (d = lid, lid + CHUNK, …;
 * consecutive invocations read consecutive V addresses). Every quantity is computed in an order fixed by p, hd
 * and CHUNK alone, so a row's output is bit-identical whatever m it was computed with (batch invariance).
 */
export const ATTENTION_WGSL = /* wgsl */ `
struct Uniforms {
  m: u32,
  heads: u32,
  hd: u32,
  max_len: u32,
  start: u32,
  group: u32,
  scale: f32,
  _pad0: u32,
}

// Keys per chunk = invocations per workgroup.
const CHUNK: u32 = 64u;
// Widest head the kernel holds (q in workgroup memory, MAX_HD / CHUNK accumulators per invocation);
// kernels.ts ATTENTION_MAX_HEAD_DIM mirrors it.
const MAX_HD: u32 = 256u;
const PER: u32 = MAX_HD / CHUNK;

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> q_s: array<f32, MAX_HD>;
var<workgroup> e_s: array<f32, CHUNK>;
var<workgroup> red: array<f32, CHUNK>;

@compute @workgroup_size(CHUNK, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let pair = wg.y * nwg.x + wg.x;
  if (pair >= u.m * u.heads) { return; }
  let i = pair / u.heads;
  let h = pair % u.heads;
  let base = (h / u.group) * u.max_len * u.hd;
  let p = u.start + i;
  let qo = (i * u.heads + h) * u.hd;
  for (var t = lid; t < u.hd; t += CHUNK) { q_s[t] = q[qo + t]; }
  workgroupBarrier();

  var acc: array<f32, PER>;
  var run_max = 0.0;
  var run_sum = 0.0;
  for (var c0 = 0u; c0 <= p; c0 += CHUNK) {
    let j = c0 + lid;
    let live = j <= p;
    var s = -3.0e38;
    if (live) {
      let ko = base + j * u.hd;
      var d = 0.0;
      for (var t = 0u; t < u.hd; t++) { d += q_s[t] * k[ko + t]; }
      s = d * u.scale;
    }
    red[lid] = s;
    workgroupBarrier();
    for (var w = CHUNK / 2u; w > 0u; w >>= 1u) {
      if (lid < w) { red[lid] = max(red[lid], red[lid + w]); }
      workgroupBarrier();
    }
    let first = c0 == 0u;
    let new_max = select(max(run_max, red[0]), red[0], first);
    let corr = select(exp(run_max - new_max), 0.0, first);
    e_s[lid] = select(0.0, exp(s - new_max), live);
    workgroupBarrier();
    let cnt = min(CHUNK, p + 1u - c0);
    var csum = 0.0;
    for (var jj = 0u; jj < cnt; jj++) { csum += e_s[jj]; }
    run_sum = run_sum * corr + csum;
    for (var r = 0u; r < PER; r++) {
      let t = lid + r * CHUNK;
      if (t < u.hd) {
        var a = acc[r] * corr;
        for (var jj = 0u; jj < cnt; jj++) { a += e_s[jj] * v[base + (c0 + jj) * u.hd + t]; }
        acc[r] = a;
      }
    }
    run_max = new_max;
    // e_s and red are rewritten by the next chunk.
    workgroupBarrier();
  }
  for (var r = 0u; r < PER; r++) {
    let t = lid + r * CHUNK;
    if (t < u.hd) { out[qo + t] = acc[r] / run_sum; }
  }
}
`;
