#!/usr/bin/env bash
# Packs what a run on the lent GPU machine needs into .gpukit/ (git-ignored): run on the CPU machine, from the repo
# root, after `npm ci && npm run build`. The GPU machine has no Node, no npm and no internet, and what travels (the
# tracked files + carried paths) must stay under 64 MiB, so everything goes into one xz tarball:
#   node (this machine's binary, stripped), Dawn (the `webgpu` package's dawn.node, stripped), the Vulkan/GL loader
#   debs, tfjs-core + tfjs-backend-webgpu 4.22 (the peer), dist/index.js bundled with its dependencies (zod,
#   @huggingface/tokenizers), and test/gpu bundled with a stand-in for vitest's runner (vitest-shim.ts).
# Then: device run with carry [".gpukit"] and `bash scripts/gpu/on-device.sh probe tests model webgpu decode`.
set -euo pipefail
[ -f package.json ] && [ -d node_modules/webgpu ] && [ -f dist/index.js ] || { echo "run from the repo root after npm ci && npm run build" >&2; exit 1; }
E=node_modules/.bin/esbuild
W=$(mktemp -d)
K=$W/k
mkdir -p $K/bin $K/dist $K/debs $K/node_modules/webgpu/dist/linux-x64
cp "$(command -v node)" $K/bin/node && strip --strip-all $K/bin/node
cp node_modules/webgpu/{index.js,package.json} $K/node_modules/webgpu/
cp node_modules/webgpu/dist/linux-x64/dawn.node $K/node_modules/webgpu/dist/linux-x64/ && strip --strip-unneeded $K/node_modules/webgpu/dist/linux-x64/dawn.node
$E dist/index.js --bundle --format=esm --platform=node --minify-whitespace --minify-syntax --keep-names --outfile=$K/dist/index.js --log-level=warning
cp dist/worker.js dist/worker-script.js $K/dist/
$E scripts/gpu/run-tests.ts --bundle --format=esm --platform=node --splitting --outdir=$K/gpubundle --alias:vitest=./scripts/gpu/vitest-shim.ts \
  --external:webgpu --minify-whitespace --minify-syntax --keep-names --log-level=warning \
  --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);"
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64-lists'
mkdir -p /tmp/amd64-lists/partial; apt-get $o update -q >/dev/null
(cd $K/debs && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 2>&1 | grep -v unsandboxed || true)
T=$W/tf; mkdir -p $T
(cd $T && npm init -y >/dev/null && npm install --silent --no-audit --no-fund @tensorflow/tfjs-core@4.22.0 @tensorflow/tfjs-backend-webgpu@4.22.0)
for p in tfjs-core tfjs-backend-webgpu tfjs-backend-cpu; do
  mkdir -p $K/node_modules/@tensorflow/$p/dist
  cp $T/node_modules/@tensorflow/$p/package.json $K/node_modules/@tensorflow/$p/
  cp $T/node_modules/@tensorflow/$p/dist/*.node.js $K/node_modules/@tensorflow/$p/dist/
done
for p in seedrandom long node-fetch whatwg-url tr46 webidl-conversions; do [ -d $T/node_modules/$p ] && cp -r $T/node_modules/$p $K/node_modules/; done
mkdir -p .gpukit
tar -C $W -cf - k | xz -T2 -7 > .gpukit/payload.tar.xz
rm -rf "$W"
kit=$(stat -c %s .gpukit/payload.tar.xz)
tracked=$(git ls-files -z | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s}')
echo "payload $((kit / 1048576)) MiB + tracked files $((tracked / 1048576)) MiB = $(((kit + tracked) / 1048576)) MiB of the 64 MiB that may travel"
[ $((kit + tracked)) -lt $((64 * 1048576)) ] || { echo "too large to travel" >&2; exit 1; }
