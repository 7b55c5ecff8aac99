#!/usr/bin/env bash
# Builds dist/cendetect: one self-contained Linux executable of the `cendetect` command
# (PyInstaller --onefile) with the bundled default model and the native extensions inside;
# no Python is needed to run it. Run ./setup.sh first (it installs PyInstaller into .venv).
#
#   packaging/build_exe.sh [OUT_DIR]     (default: dist/)
#
# Intermediate files (~1 GB: the staged package, a venv, PyInstaller's work folder) go to
# $CENDETECT_EXE_WORK (default build/exe/), removed and remade on each run.
#
# How: the package is staged as its wheel lays it out (cendetect/, engine/ -> cendetect/engine,
# compile/ -> cendetect/compile, the built .so files), and PyInstaller runs in a throwaway venv
# that sees the staged copy first and .venv's site-packages after it. .venv itself cannot be
# used as is: its editable install redirects `cendetect` imports to the source tree, which
# PyInstaller's module finder does not follow. Optional engines and services (ONNX Runtime,
# OpenVINO, Redis, the test tools) are left out: the executable runs eager and TorchScript
# models on images, folders and videos, and the studio (started with no arguments, it opens
# the studio's page; uvicorn and anyio load their parts by name, so they are collected whole);
# docs/packaging.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT="${1:-$ROOT/dist}"
VENV_PY="$ROOT/.venv/bin/python"
WORK="${CENDETECT_EXE_WORK:-$ROOT/build/exe}"
[ -x "$VENV_PY" ] || { echo "build_exe: run ./setup.sh first (.venv is missing)" >&2; exit 1; }
"$VENV_PY" -c "import PyInstaller" 2>/dev/null \
    || { echo "build_exe: PyInstaller is not installed in .venv (./setup.sh installs it)" >&2; exit 1; }
SITE=$("$VENV_PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")

rm -rf "$WORK"
mkdir -p "$WORK/stage" "$OUT"
# 1. the package as the wheel has it (pyproject.toml [tool.scikit-build.wheel.packages])
cp -r cendetect "$WORK/stage/cendetect"
cp -r engine "$WORK/stage/cendetect/engine"
cp -r compile "$WORK/stage/cendetect/compile"
find "$WORK/stage" -name __pycache__ -prune -exec rm -rf {} +
ls "$SITE"/cendetect/*.so >/dev/null 2>&1 \
    || { echo "build_exe: the native extension is not built ($SITE/cendetect/*.so)" >&2; exit 1; }
cp "$SITE"/cendetect/*.so "$WORK/stage/cendetect/"
[ -f "$WORK/stage/cendetect/weights/mobilenet_v2_fpn.pth" ] \
    || { echo "build_exe: the default model (cendetect/weights/mobilenet_v2_fpn.pth) is missing" >&2; exit 1; }

# 2. a venv whose path is: staged package, then .venv's packages (a plain path in a .pth file
#    is not itself scanned for .pth files, so the editable redirect stays out)
"$VENV_PY" -m venv --without-pip "$WORK/venv"
BSITE=$("$WORK/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
printf '%s\n%s\n' "$WORK/stage" "$SITE" > "$BSITE/cendetect_exe_build.pth"
# (run from $WORK: Python puts the working directory first on the path, and the repository
# root's cendetect/ has no .so files)
cd "$WORK"
"$WORK/venv/bin/python" -c "import cendetect._compositor, cendetect._C, cendetect.engine"

# 3. PyInstaller
# (pyarrow and pandas serve only cendetect.ray, whose Ray is left out too: 113 MB)
EXCLUDES=(onnxruntime onnx onnxscript onnx_ir openvino redis pytest _pytest hypothesis ruff
          playwright ray pyarrow pandas IPython jupyter tkinter matplotlib cmake Cython
          scikit_build_core setuptools pip torch.utils.tensorboard tensorboard)
args=()
for m in "${EXCLUDES[@]}"; do args+=(--exclude-module "$m"); done
"$WORK/venv/bin/python" -m PyInstaller --noconfirm --clean --onefile --name cendetect \
    --distpath "$OUT" --workpath "$WORK/pyinstaller" --specpath "$WORK" \
    --collect-submodules cendetect --collect-data cendetect \
    --collect-binaries cendetect --copy-metadata cendetect \
    --collect-submodules uvicorn --collect-submodules anyio \
    "${args[@]}" --log-level WARN "$ROOT/packaging/cendetect_exe.py"
ls -l "$OUT/cendetect"
