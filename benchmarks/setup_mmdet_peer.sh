#!/usr/bin/env bash
# Builds the benchmark peer: real mmdetection 2.28.2 with mmcv-full 1.7.2 compiled from source
# against this machine's torch 2.13.0 (CPU), in its own virtual environment (never a dependency
# of the project). bench_eager.py and bench_engines.py (--peers mmdet) run it side by side with
# cendetect; tests/data/mmdet/README.md describes the recipe.
#
#   bash benchmarks/setup_mmdet_peer.sh [VENV] [STUB]   # defaults: /work/peers/mmdet2, /work/peers/tvstub
#
# About 13 minutes on 2 cores (the mmcv-full C++ ops); MAX_JOBS=1 halves the load and doubles
# the time. Safe to run again: finished steps are skipped.
set -euo pipefail

VENV="${1:-/work/peers/mmdet2}"
STUB="${2:-/work/peers/tvstub}"
PYTHON="${PYTHON:-python3}"
MAX_JOBS="${MAX_JOBS:-2}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[peer] creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"

if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
    echo "[peer] installing torch==2.13.0"
    $PIP install --quiet "torch==2.13.0"
fi
$PIP install --quiet 'setuptools<81' wheel ninja 'numpy<2' 'opencv-python-headless<5' addict \
    yapf==0.40.1 pyyaml pillow matplotlib scipy pycocotools six terminaltables psutil

# mmcv 1.7 imports torchvision only to list model URLs; torchvision's PyPI wheels are CUDA builds
# that cannot import on the CPU torch, so a two-file stub stands in for it (PYTHONPATH).
mkdir -p "$STUB/torchvision/models"
printf '__version__ = "0.28.0"\nfrom . import models\n' > "$STUB/torchvision/__init__.py"
: > "$STUB/torchvision/models/__init__.py"

if ! PYTHONPATH="$STUB" "$VENV/bin/python" -c "import mmcv.ops" 2>/dev/null; then
    echo "[peer] building mmcv-full 1.7.2 with its C++ ops (CPU; MAX_JOBS=$MAX_JOBS)"
    MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="$MAX_JOBS" \
        $PIP install --quiet --no-build-isolation --no-deps mmcv-full==1.7.2
fi
if ! PYTHONPATH="$STUB" "$VENV/bin/python" -c "import mmdet" 2>/dev/null; then
    echo "[peer] installing mmdet 2.28.2"
    $PIP install --quiet --no-deps mmdet==2.28.2
fi
PYTHONPATH="$STUB" "$VENV/bin/python" -c \
    "import mmcv, mmcv.ops, mmdet, torch; print('[peer] ready:', 'mmdet', mmdet.__version__, 'mmcv', mmcv.__version__, 'torch', torch.__version__)"
