#!/usr/bin/env bash
# Builds wasm/peftjs.wasm from cpp/ (emscripten 3.1.6) and wasm/peftjs-relaxed.wasm (clang-19 + wasm-ld-19 with
# relaxed SIMD, linked against emscripten's own libc/dlmalloc), then regenerates src/runtime/wasm-bytes.ts.
# Deterministic: same sources + same compilers → same bytes (CI rebuilds and runs `git diff --exit-code wasm/`).
set -euo pipefail
cd "$(dirname "$0")/.."

EXPORTS='["_malloc","_free","_peft_abi_version","_peft_heap_bytes_in_use","_peft_quant_strip_rows","_peft_set_tuning","_peft_gemv1_tile",
"_peft_weight_panel_bytes","_peft_panel_gemv_max_m","_peft_f32_pack_panels","_peft_f32_unpack_panels","_peft_bf16_pack_panels","_peft_bf16_unpack_panels","_peft_panel_gather_rows",
"_peft_f32_linear","_peft_f32_linear__scalar","_peft_f32_linear_cols","_peft_f32xbf16_linear_cols","_peft_f32_qlinear_cols","_peft_f32_row_pairs_bytes","_peft_f32_stage_row_pairs","_peft_f32_qlinear_staged_bytes","_peft_f32_qlinear_stage","_peft_f32_linear_scratch_bytes","_peft_f32_epilogue_rows",
"_peft_f32xbf16_linear","_peft_f32xbf16_linear__scalar","_peft_f32xbf16_linear_scratch_bytes",
"_peft_f32_lora_shrink","_peft_f32_lora_shrink__scalar","_peft_f32_lora_expand","_peft_f32_lora_expand__scalar",
"_peft_f32_dequantize","_peft_f32_dequantize__scalar","_peft_f32_qlinear","_peft_f32_qlinear__scalar","_peft_f32_qlinear_scratch_bytes",
"_peft_f16_to_f32","_peft_f16_to_f32__scalar","_peft_bf16_to_f32","_peft_bf16_to_f32__scalar",
"_peft_f32_to_f16","_peft_f32_to_f16__scalar","_peft_f32_to_bf16","_peft_f32_to_bf16__scalar",
"_peft_f32_rms_norm","_peft_f32_rms_norm__scalar","_peft_f32_layer_norm","_peft_f32_layer_norm__scalar",
"_peft_f32_rope","_peft_f32_rope__scalar","_peft_f32_add_inplace","_peft_f32_add_inplace__scalar",
"_peft_f32_swiglu","_peft_f32_swiglu__scalar","_peft_f32_gelu_tanh","_peft_f32_gelu_tanh__scalar",
"_peft_f32_kv_write","_peft_f32_kv_write__scalar",
"_peft_f32_attention","_peft_f32_attention__scalar","_peft_f32_attention_scratch_bytes"]'
EXPORTS="$(echo "$EXPORTS" | tr -d '\n')"

mkdir -p wasm
FLAGS=(
  -O3                               # full optimisation; the kernels rely on unrolled template loops
  -msimd128                         # WebAssembly SIMD128 (relaxed SIMD is not usable with this clang)
  -std=c++17                        # `if constexpr` in the tile templates
  -DNDEBUG                          # drop the debug asserts at the top of each kernel
  -fno-exceptions -fno-rtti         # no C++ runtime beyond malloc/free
  --no-entry                        # a library: no main()
  -sSTANDALONE_WASM                 # no JS glue; our own loader in src/runtime/wasm.ts instantiates it
  -sEXPORTED_FUNCTIONS="$EXPORTS"   # the ABI of cpp/exports.cpp plus the allocator
  -sALLOW_MEMORY_GROWTH             # tensors live in linear memory; grow on demand
  -sMAXIMUM_MEMORY=4GB              # wasm32 limit (pointers are read as `ptr >>> 0` in JS)
  -sINITIAL_MEMORY=16MB             # small start; growth is cheap and views are rebuilt on access
  -sTOTAL_STACK=1MB                  # kernels use a few KiB of stack (tile accumulators)
  -sMALLOC=dlmalloc                 # reuses freed blocks, so repeated forwards do not grow memory
  -sFILESYSTEM=0                    # nothing touches files
  -sERROR_ON_UNDEFINED_SYMBOLS=1    # the only import must be env.emscripten_notify_memory_growth
  -g0                               # no names/debug info: smaller and byte-for-byte reproducible
)
emcc "${FLAGS[@]}" cpp/exports.cpp -o wasm/peftjs.wasm
echo "wasm/peftjs.wasm  sha256 $(sha256sum wasm/peftjs.wasm | cut -d' ' -f1)  $(wc -c < wasm/peftjs.wasm) bytes"

# ---- relaxed SIMD build: the same sources with f32x4.relaxed_madd in the k-loops (cpp/madd.h) ------------------
# emscripten 3.1.6's clang (14) cannot emit relaxed SIMD and its binaryen (108) knows only the old opcodes, so clang-19
# compiles for the emscripten target against emscripten's sysroot and wasm-ld-19 links the libraries emcc would link
# (the same link line as `emcc -v` prints for the build above), without the wasm-opt pass. Same ABI, same single
# import (env.emscripten_notify_memory_growth), same exports the loader uses. Chosen at run time by feature detection.
CLANG="${CLANG19:-clang++-19}"
WASMLD="${WASMLD19:-wasm-ld-19}"
SYSROOT="$(dirname "$(readlink -f "$(command -v emcc)")")/cache/sysroot"
[ -d "$SYSROOT" ] || SYSROOT=/usr/share/emscripten/cache/sysroot
LIBDIR="$SYSROOT/lib/wasm32-emscripten"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
RFLAGS=(
  --target=wasm32-unknown-emscripten --sysroot="$SYSROOT"
  -Xclang -iwithsysroot/include/compat  # mallinfo (as emcc adds it)
  -DEMSCRIPTEN -fno-threadsafe-statics
  -O3 -msimd128 -mrelaxed-simd -std=c++17 -DNDEBUG -fno-exceptions -fno-rtti
  -ffp-contract=off                    # fused only where cpp/madd.h asks: epilogues and scalar twins keep base ops
)
"$CLANG" "${RFLAGS[@]}" -c cpp/exports.cpp -o "$TMP/exports.o"
LEXPORTS=()
for e in $(echo "$EXPORTS" | tr -d '[]" ' | tr ',' ' '); do LEXPORTS+=("--export-if-defined=${e#_}"); done
"$WASMLD" -o wasm/peftjs-relaxed.wasm "$TMP/exports.o" -L"$LIBDIR" "$LIBDIR/crt1_reactor.o" \
  -lstandalonewasm-memgrow -lstubs -lnoexit -lc -ldlmalloc -lcompiler_rt \
  --import-undefined --strip-all "${LEXPORTS[@]}" --export=_initialize \
  -z stack-size=1048576 --initial-memory=16777216 --max-memory=4294967296 --entry=_initialize --global-base=1024
echo "wasm/peftjs-relaxed.wasm  sha256 $(sha256sum wasm/peftjs-relaxed.wasm | cut -d' ' -f1)  $(wc -c < wasm/peftjs-relaxed.wasm) bytes"

# ---- shared-memory builds for threads (src/runtime/threads.ts): the same two ISAs plus atomics + bulk memory, the
# memory imported as a shared WebAssembly.Memory. Every worker instantiates the module on that memory with its own
# stack (stackRestore); only the main instance runs _initialize and malloc. Linked against emscripten's -mt
# libc/dlmalloc (the only ones built with atomics); the pthread hooks they import are no-ops in the loader.
# -mt (SIMD128) has the base build's operations, so its bits; -mt-relaxed has the relaxed build's.
for variant in mt mt-relaxed; do
  MFLAGS=("${RFLAGS[@]}" -matomics -mbulk-memory)
  [ "$variant" = mt ] && MFLAGS=("${MFLAGS[@]/-mrelaxed-simd/-msimd128}")
  "$CLANG" "${MFLAGS[@]}" -c cpp/exports.cpp -o "$TMP/exports-$variant.o"
  "$WASMLD" -o "wasm/peftjs-$variant.wasm" "$TMP/exports-$variant.o" -L"$LIBDIR" "$LIBDIR/crt1_reactor.o" \
    -lstandalonewasm-memgrow -lstubs -lnoexit -lc-mt -ldlmalloc-mt -lcompiler_rt-mt \
    --import-undefined --strip-all "${LEXPORTS[@]}" --export=_initialize --export=stackRestore \
    --import-memory --shared-memory \
    -z stack-size=1048576 --initial-memory=16777216 --max-memory=4294967296 --entry=_initialize --global-base=1024
  echo "wasm/peftjs-$variant.wasm  sha256 $(sha256sum "wasm/peftjs-$variant.wasm" | cut -d' ' -f1)  $(wc -c < "wasm/peftjs-$variant.wasm") bytes"
done
node scripts/gen-wasm-bytes.mjs
