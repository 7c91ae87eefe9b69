#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run of the op tests.
#
# Builds nnkernels._C with -DNNK_SANITIZE=ON into its own build directory,
# puts it in a private copy of the Python package (a normal build in python/
# is never touched), and runs the kernel tests with gcc's libasan preloaded.
# Any ASan or UBSan report fails the run. See docs/sanitizers.md.
#
# Usage: .ci/sanitize.sh [extra pytest arguments]
# Env:   PYTHON (default python), NNK_SANITIZE_BUILD_DIR (default build/sanitize),
#        NNK_SANITIZE_TESTS (default: the op test files listed below).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python}
BUILD=${NNK_SANITIZE_BUILD_DIR:-build/sanitize}

# --- build -------------------------------------------------------------------
# -O2 with line tables (-g1): optimised (the vector kernels are those that
# ship) with file:line in the reports, and faster to build than full -g.
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNNK_SANITIZE=ON \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
  -Dpybind11_DIR="$($PY -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(command -v "$PY")" >/dev/null
cmake --build "$BUILD" -j "${NNK_JOBS:-2}"

# --- private copy of the package ------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/nnk-sanitize.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cp -r python/nnkernels "$WORK/"
rm -f "$WORK"/nnkernels/_C*.so
cp "$BUILD"/_C*.so "$WORK/nnkernels/"
LOG="$WORK/sanitizer"

# --- run -----------------------------------------------------------------------
# Python itself is not instrumented, so the ASan runtime must be the first
# library loaded (LD_PRELOAD). Python's allocations are never freed at exit by
# design: leak detection is off. Every UBSan finding aborts (the build also
# uses -fno-sanitize-recover=undefined). Reports also go to $LOG.<pid> so
# nothing can hide in captured output.
# libstdc++ is preloaded too: ASan's __cxa_throw interceptor must find the
# real one when it starts, or the first C++ exception (a TypeError raised by a
# binding) dies in "CHECK failed: ... real___cxa_throw".
LIBASAN=$(readlink -f "$(g++ -print-file-name=libasan.so)")
LIBSTDCXX=$(readlink -f "$(g++ -print-file-name=libstdc++.so)")
for lib in "$LIBASAN" "$LIBSTDCXX"; do
  [ -f "$lib" ] || { echo "sanitize.sh: $lib not found" >&2; exit 1; }
done
# ldd's output is captured first: `ldd | grep -q` under pipefail fails now and
# then (grep -q exits at the first match, ldd gets SIGPIPE on its next line;
# 1 in 300 here, and it once failed CI).
ldd_out=$(ldd "$WORK"/nnkernels/_C*.so)
if ! grep -q libasan <<<"$ldd_out"; then
  echo "sanitize.sh: the built extension is not instrumented" >&2; exit 1
fi
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:exitcode=86:log_path=$LOG:log_exe_name=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$LOG"
# PyTorch and Numba load and run under the preloaded runtime (their code is
# not instrumented; only nnkernels._C is checked). The Numba parametrisations
# are deselected (-k "not numba") only to keep the run short: compiling every
# Numba kernel again takes minutes and checks no C++ code.
TESTS=${NNK_SANITIZE_TESTS:-"tests/test_gemm.py tests/test_gemm_kernels.py tests/test_dispatch.py tests/test_props.py tests/test_validation.py tests/test_threads.py tests/test_optim_kernels.py tests/test_activations.py tests/test_losses.py tests/test_fused_step.py tests/test_nn_modules.py tests/test_checkpoint.py"}
existing=()
for t in $TESTS; do [ -e "$t" ] && existing+=("$t"); done

# Self-check: the runtime is active and its reports reach a log file
# (a deliberate overlapping memcpy through ASan's interceptor).
(cd "$WORK" && LD_PRELOAD="$LIBASAN $LIBSTDCXX" ASAN_OPTIONS="detect_leaks=0:log_path=$WORK/selfcheck" \
  "$PY" -c "import ctypes; b = ctypes.create_string_buffer(64); ctypes.CDLL(None).memcpy(b, ctypes.byref(b, 1), 32)" \
  >/dev/null 2>&1) || true
if ! compgen -G "$WORK/selfcheck*" >/dev/null; then
  echo "sanitize.sh: self-check failed: ASan did not report a deliberate error" >&2; exit 1
fi
(cd "$WORK" && PYTHONPATH="$WORK" LD_PRELOAD="$LIBASAN $LIBSTDCXX" "$PY" -c \
  "import nnkernels, sys; f = nnkernels._C.__file__; print('sanitize.sh: testing', f); sys.exit(not f.startswith('$WORK'))")
set +e
(cd "$WORK" && PYTHONPATH="$WORK" LD_PRELOAD="$LIBASAN $LIBSTDCXX" PYTHONMALLOC=malloc \
  NNK_SANITIZE_RUN=1 "$PY" -m pytest -q -p no:cacheprovider -x --capture=sys \
  -c "$ROOT/pyproject.toml" --rootdir "$ROOT" \
  -k "${NNK_SANITIZE_K:-not numba}" "${existing[@]/#/$ROOT/}" "$@") 2>&1 | tee "$WORK/pytest.log"
status=${PIPESTATUS[0]}
set -e
# --capture=sys leaves file descriptor 2 alone, so a report that did not go
# to log_path still reaches the terminal and this check (UBSan in a process
# that also has ASan does not always honour log_path).
if grep -qE "runtime error:|ERROR: AddressSanitizer|ERROR: LeakSanitizer|AddressSanitizer: CHECK failed" "$WORK/pytest.log"; then
  echo "sanitize.sh: sanitizer report in the test output:" >&2
  grep -E -A12 "runtime error:|ERROR: AddressSanitizer|AddressSanitizer: CHECK failed" "$WORK/pytest.log" | head -60 >&2
  exit 1
fi

if compgen -G "$LOG*" >/dev/null; then
  echo "sanitize.sh: sanitizer reports:" >&2
  cat "$LOG"* >&2
  exit 1
fi
if [ $status -ne 0 ]; then
  echo "sanitize.sh: tests failed (exit $status)" >&2
  exit $status
fi
echo "sanitize.sh: clean (ASan + UBSan, ${#existing[@]} test files)"
