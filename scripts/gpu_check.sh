#!/usr/bin/env bash
# One call on a GPU machine without network: build trtcal from this checkout (sm_90 by
# default), run the whole test suite (GPU tests included), run the benchmarks, and print a
# short summary. TensorRT headers, when carried in .trt/<version>/include, build the plugin
# (the wheel uses the first; every version found is compile-proved).
#   scripts/gpu_check.sh [all|tests|gpu|bench] [extra pytest args...]
#   (all: build, GPU suite, other tests, benchmarks; tests: both test runs; gpu: the GPU suite)
# Peers missing from a machine without network (ModelOpt and its dependencies) install from
# wheels carried in .whl/ when present: on the development machine,
#   pip download nvidia-modelopt==0.47.0 pydantic pydantic-core annotated-types typing-inspection \
#     omegaconf antlr4-python3-runtime "pulp<4" --no-deps --only-binary=:all: \
#     --python-version 3.12 --platform manylinux2014_x86_64 --platform any -d .whl
# and carry .whl (git-ignored) with the run.
set -uo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"; shift || true
out="${OUT:-$PWD/out}"; mkdir -p "$out"
export TRTCAL_CUDA_ARCHITECTURES="${TRTCAL_CUDA_ARCHITECTURES:-90}"
export TRTCAL_REQUIRE_CUDA=ON PYTHONUNBUFFERED=1
trt_versions=$(ls -d .trt/*/include 2>/dev/null | cut -d/ -f2 | sort -V -r | tr '\n' ' ')
first=$(echo $trt_versions | cut -d' ' -f1)
[ -n "$first" ] && export TensorRT_ROOT="$PWD/.trt/$first"
summary=()

if [ -d .whl ] && ! python3 -c "import modelopt" 2>/dev/null; then
  if python3 -m pip install -q --no-index --find-links .whl nvidia-modelopt > "$out/peers.log" 2>&1; then
    summary+=("peers: ModelOpt installed from .whl/")
  else
    summary+=("peers: ModelOpt could not be installed from .whl/ (see peers.log); its rows and tests skip")
  fi
fi

t0=$(date +%s)
if ! python3 -m pip install --no-build-isolation --no-deps -v . > "$out/build.log" 2>&1; then
  tail -40 "$out/build.log"; echo "BUILD FAILED"; exit 1
fi
summary+=("build: ok in $(( $(date +%s) - t0 ))s (archs $TRTCAL_CUDA_ARCHITECTURES, TensorRT headers: ${trt_versions:-none})")

for v in $trt_versions; do
  if [ -x scripts/check_plugin_headers.sh ]; then
    if scripts/check_plugin_headers.sh "$PWD/.trt/$v" >> "$out/build.log" 2>&1; then
      summary+=("plugin vs TensorRT $v headers: compiled with -Werror, harness --no-gpu passed")
    else
      tail -20 "$out/build.log"; summary+=("plugin vs TensorRT $v headers: FAILED")
    fi
  fi
done

rc_tests=0
if [ "$what" = all ] || [ "$what" = tests ] || [ "$what" = gpu ]; then
  # the GPU suite (markers gpu / plugin), then everything else
  python3 -m pytest -q -rs -p no:cacheprovider -m "gpu or plugin" "$@" 2>&1 | tee "$out/pytest-gpu.log" | tail -40
  rc_gpu=${PIPESTATUS[0]}
  rc_cpu=0
  if [ "$what" != gpu ]; then
    python3 -m pytest -q -p no:cacheprovider -m "not gpu and not plugin" "$@" 2>&1 | tee "$out/pytest-cpu.log" | tail -15
    rc_cpu=${PIPESTATUS[0]}
  fi
  rc_tests=$(( rc_gpu || rc_cpu ))
  summary+=("GPU suite (pytest -m 'gpu or plugin'): $(tail -1 "$out/pytest-gpu.log") (exit $rc_gpu)")
  [ "$what" != gpu ] && summary+=("other tests (pytest -m 'not gpu and not plugin'): $(tail -1 "$out/pytest-cpu.log") (exit $rc_cpu)")
fi

rc_bench=0
if [ "$what" = all ] || [ "$what" = bench ]; then
  python3 benchmarks/run.py --out "$out" > "$out/bench.log" 2>&1; rc_bench=$?
  tail -80 "$out/bench.log"
  summary+=("benchmarks: exit $rc_bench, $out/RESULTS.md")
fi

echo; echo "== summary"; printf '%s\n' "${summary[@]}"
[ $rc_tests -eq 0 ] && [ $rc_bench -eq 0 ]
