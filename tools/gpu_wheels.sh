#!/usr/bin/env bash
# Fill tools/wheels/ (git-ignored) with the small wheels the GPU device machine lacks, for its
# Python and platform (CPython 3.12, manylinux x86-64), before a run of tools/gpu_check.sh: the
# device has no network (it has pytest, pytest-xdist, OpenCV, Pillow, onnxruntime and
# torchvision already). Pure-Python or small wheels only, 3.7 MB in all (PyAV is left out: its
# wheel is ~35 MB and only the video tests need it).
#
#   tools/gpu_wheels.sh [PYTHON_VERSION]     # default 3.12
set -eu
cd "$(dirname "$0")"
PYV="${1:-3.12}"
mkdir -p wheels
PY="${PYTHON:-python3}"
[ -x ../.venv/bin/python ] && PY=../.venv/bin/python
# compiled packages: the device's Python and platform
"$PY" -m pip download --quiet --only-binary=:all: --no-deps --dest wheels \
    --python-version "$PYV" --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 --implementation cp \
    "pycocotools>=2.0.7" "isal>=1.6" "pyyaml>=6" "hypothesis>=6"
# pure-Python packages (some only publish source archives): wheels built here, any platform
"$PY" -m pip wheel --quiet --no-deps --wheel-dir wheels \
    "opex>=0.0.3" "wai.json" "redis>=5" "tqdm>=4.66" "sortedcontainers" "attrs"
du -ch wheels/*.whl | tail -1
