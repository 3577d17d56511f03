#!/usr/bin/env bash
# Compile-proof of the SiLU plugin against TensorRT 10.x and 11.x headers (no TensorRT
# library needed): configures and builds csrc/plugin standalone with -Werror for each
# header tree, then runs the harness's GPU-free checks.
#
#   scripts/check_plugin_headers.sh [TRT_ROOT ...]
#
# Default roots: .trt/10.16 and .trt/11.1 of the main checkout (NVIDIA/TensorRT OSS include/
# trees, git-ignored). Build directories: /tmp/trtcal_plugin_<version>.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
roots=("$@")
if [ ${#roots[@]} -eq 0 ]; then
  for v in 10.16 11.1; do
    for base in "$here/.trt" /work/main/.trt; do
      if [ -f "$base/$v/include/NvInferRuntime.h" ]; then roots+=("$base/$v"); break; fi
    done
  done
fi
[ ${#roots[@]} -gt 0 ] || { echo "no TensorRT header trees found; pass TRT_ROOT paths" >&2; exit 2; }
arch="${TRTCAL_CUDA_ARCHITECTURES:-90}"
status=0
for root in "${roots[@]}"; do
  name="$(basename "$root")"
  build="/tmp/trtcal_plugin_$name"
  echo "== TensorRT headers $root -> $build"
  cmake -S "$here/csrc/plugin" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DTensorRT_ROOT="$root" -DTRTCAL_PLUGIN_WERROR=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" >"$build.configure.log" 2>&1 \
    || { cat "$build.configure.log"; status=1; continue; }
  grep "trtcal:" "$build.configure.log" || true
  if cmake --build "$build" -j "$(nproc)" && [ -f "$build/libtrtcal_plugins.so" ]; then
    echo "built $build/libtrtcal_plugins.so and $build/trtcal_plugin_harness"
    echo "exported symbols: $(nm -D --defined-only "$build/libtrtcal_plugins.so" | awk '$2 == "T" {print $3}' | tr '\n' ' ')"
    "$build/trtcal_plugin_harness" "$build/libtrtcal_plugins.so" --no-gpu || status=1
  else
    status=1
  fi
done
exit $status
