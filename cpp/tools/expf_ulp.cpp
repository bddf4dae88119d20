// Measures expf_approx (cpp/expf.h) against float64 exp on every f32 in its finite range, SIMD and scalar,
// and checks the two give the same bits. Not part of the library build.
//   emcc -O2 -msimd128 -std=c++17 -sSTANDALONE_WASM cpp/tools/expf_ulp.cpp -o /tmp/expf_ulp.wasm
//   node --no-warnings -e "const{WASI}=require('node:wasi');const w=new WASI({version:'preview1'});
//     WebAssembly.instantiate(require('fs').readFileSync('/tmp/expf_ulp.wasm'),w.getImportObject())
//     .then(({instance})=>process.exit(w.start(instance)))"          (≈ 90 s; exit status 1 on a SIMD/scalar mismatch)
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "../expf.h"

using namespace peft;

static float from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

int main() {
  const ExpConsts c;
  double max_ulp = 0, max_rel = 0, worst = 0;
  unsigned long long count = 0, exact = 0, mismatch = 0;
  // Walk the f32 bit patterns of [−86.98, 88.72]: negatives from −0 down to kLo, positives from +0 up to the
  // last x whose eˣ rounds to a finite f32 (there the result must overflow to +inf).
  for (int sign = 0; sign < 2; sign++) {
    const float end = sign ? expf_detail::kLo : expf_detail::kHi;
    for (uint32_t u = sign ? 0x80000000u : 0u;; u++) {
      const float x = from_bits(u);
      if (sign ? x < end : x > end) break;
      if (!sign && !isfinite((float)exp((double)x))) {
        if (expf_approx(x) != INFINITY) mismatch++;
        break;
      }
      float lanes[4];
      wasm_v128_store(lanes, expf_approx_x4(wasm_f32x4_splat(x), c));
      const float s = expf_approx(x);
      if (to_bits(lanes[0]) != to_bits(s)) mismatch++;
      const double ref = exp((double)x);
      const double ulp = ldexp(1.0, ilogb(ref) - 23);  // f32 ulp at ref (normal range)
      const double e = fabs((double)s - ref) / ulp;
      const double rel = fabs((double)s - ref) / ref;
      if (e > max_ulp) { max_ulp = e; worst = x; }
      if (rel > max_rel) max_rel = rel;
      if ((float)ref == s) exact++;
      count++;
    }
  }
  printf("inputs %llu  max error %.3f ulp at x = %.9g  max relative %.3g  correctly rounded %.1f %%  simd/scalar bit mismatches %llu\n",
         count, max_ulp, worst, max_rel, 100.0 * exact / count, mismatch);
  // Edges.
  const float edge[] = {-INFINITY, -1000.f, -87.f, -86.98f, 0.f, 88.72f, 88.7229f, 88.76f, 1000.f, INFINITY, NAN};
  for (float x : edge) printf("exp(%g) = %g\n", x, expf_approx(x));
  return mismatch != 0;
}
