#!/usr/bin/env bash
# On the lent GPU machine, from the repo root, with .gpukit carried (see pack.sh). Unpacks Node, Dawn, the loaders,
# the bundled dist and GPU tests, points Vulkan at the NVIDIA driver, then runs the parts asked for, each under its
# own time limit (all within BUDGET seconds, default 480), writing into $OUT (at most 8 files come back):
#   probe   probe.log   peftjs linear (and LoRA r = 16) vs tfjs-webgpu, k = n = 4096 / 8192, best of 7 rounds
#   tests   tests.log   test/gpu on this GPU (vitest's runner replaced by vitest-shim.ts)
#   model   model.md    bench/model.mjs --part webgpu: pycoder vs the oracle and vs wasm, Qwen2.5-0.5B shapes
#   webgpu  webgpu.md   bench/webgpu.mjs: layers with kernels and GPU time, routes (16 adapters vs one)
#   decode  decode.log  a decode step's anatomy: wall, CPU recording, GPU time, dispatches (sweep.mjs decode)
#   tiles   tiles.log   every GEMM tile on 54 shapes, GPU time (sweep.mjs tiles)
#   readback readback.log  what reading y back costs, and its share of a large-m chain (sweep.mjs readback)
# env.log: the GPU, driver, features and limits.
set +e
T0=$(date +%s)
K=/tmp/k
python3 -c "import tarfile,sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" .gpukit/payload.tar.xz /tmp || { echo "unpack failed"; exit 3; }
for f in $K/debs/*.deb; do dpkg -x "$f" /; done
ldconfig
export PATH=$K/bin:$PATH
J=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
# bench/*.mjs default VK_ICD_FILENAMES to SwiftShader's ICD when unset: set both names to the NVIDIA driver.
[ -f $J ] && export VK_DRIVER_FILES=$J VK_ICD_FILENAMES=$J __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -e node_modules ] || ln -s $K/node_modules node_modules
mkdir -p dist test/gpubundle
cp $K/dist/* dist/
cp $K/gpubundle/* test/gpubundle/ # two levels below the root, as test/gpu is: the tests' relative paths hold
G=scripts/gpu
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; node --version; nproc; } > $OUT/env.log 2>&1
left() { echo $((${BUDGET:-480} - ($(date +%s) - T0))); }
step() {
  local lim=$1 out=$2; shift 2
  local l; l=$(left); [ "$lim" -gt "$l" ] && lim=$l
  if [ "$lim" -lt 10 ]; then echo "skipped: $* (no time left)" >> $OUT/env.log; return; fi
  echo "== $(date +%T) $* (limit $lim s)" >> $OUT/env.log
  timeout -k 5 "$lim" "$@" > "$OUT/$out" 2>&1
  echo "== rc=$? after $(($(date +%s) - T0)) s" >> $OUT/env.log
}
for part in "$@"; do
  case $part in
    probe) step 150 probe.log node $G/probe.mjs . 7 ;;
    tests) step 150 tests.log node --expose-gc test/gpubundle/run-tests.js ;;
    model) step 200 model.md node bench/model.mjs --part webgpu ;; # the tables on stdout, then the log
    webgpu) step 120 webgpu.md node bench/webgpu.mjs ;;
    decode) step 90 decode.log node $G/sweep.mjs . decode ;;
    tiles) step 150 tiles.log node $G/sweep.mjs . tiles ;;
    readback) step 60 readback.log node $G/sweep.mjs . readback ;;
    *) echo "unknown part $part" >> $OUT/env.log ;;
  esac
done
echo "total $(($(date +%s) - T0)) s" >> $OUT/env.log
