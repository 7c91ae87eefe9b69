#!/usr/bin/env bash
# Developer build: compile the extension with CMake into build/dev and put it
# next to the Python sources, so `PYTHONPATH=python python -c 'import nnkernels'`
# uses it. Usage: tools/dev-build.sh [extra cmake -D options]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
BUILD=${NNK_BUILD_DIR:-build/dev}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -Dpybind11_DIR="$($PY -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(command -v $PY)" "$@" >/dev/null
cmake --build "$BUILD"
so=$(ls "$BUILD"/_C*.so)
# Atomic replace: a running process keeps its mapped copy.
cp "$so" python/nnkernels/.tmp_C.so && mv python/nnkernels/.tmp_C.so "python/nnkernels/$(basename "$so")"
echo "built $(basename "$so")"
