#!/usr/bin/env bash
# One command that turns a bare CUDA machine into evidence (docs/gpu.md).
#
#   tools/gpu_check.sh [--dry-run] [--out DIR] [--budget-s SECONDS]
#
# On the device machine (CUDA torch and torchvision installed, no network): installs the small
# wheels tools/gpu_wheels.sh put in tools/wheels/ (--no-deps), builds and installs cendetect
# against the machine's own torch (--no-deps --no-build-isolation, the native extension compiled
# there), then runs, each phase under its own time box so a slow phase cannot eat the rest:
#   1. the tests marked `cuda` (tests/conftest.py marks every test that skips without CUDA),
#      JUnit XML into DIR/junit.xml;
#   2. benchmarks/bench_engines.py on CUDA: R50-FPN and the default model at 1024x1024, eager
#      fp32/fp16, TorchScript fp16, AOTInductor fp16, batch 1 and 8, torchvision's
#      maskrcnn_resnet50_fpn under autocast as the peer; raw timings into DIR/bench.json;
#   3. DIR/summary.md: the machine, each phase's status and time, the test counts, the table.
# --dry-run runs the same phases on this CPU machine without installing anything: the CUDA
# tests are collected and reported as skipped, the benchmark phase is reported as skipped
# (tests/test_gpu_check.py runs it, so the script cannot rot).
set -u
cd "$(dirname "$0")/.."
DRY=0
OUT="${OUT:-$PWD/gpu_report}"
BUDGET=480  # 8 minutes in all
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --out) OUT="$2"; shift ;;
        --budget-s) BUDGET="$2"; shift ;;
        -h|--help) sed -n 2,20p "$0"; exit 0 ;;
        *) echo "gpu_check: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
if [ "$DRY" = 1 ] && [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
START=$(date +%s)
SUMMARY="$OUT/summary.md"
PHASES="$OUT/phases.tsv"
: > "$PHASES"

left() { echo $(( BUDGET - ($(date +%s) - START) )); }
# phase NAME SECONDS COMMAND...: run under a time box, record status and wall time
phase() {
    local name="$1" box="$2"; shift 2
    local avail; avail=$(left)
    [ "$box" -gt "$avail" ] && box="$avail"
    if [ "$box" -le 5 ]; then
        printf '%s\tskipped\t0\tno time left in the %ss budget\n' "$name" "$BUDGET" >> "$PHASES"
        return 0
    fi
    local t0; t0=$(date +%s)
    timeout --signal=INT --kill-after=10 "$box" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    local dt=$(( $(date +%s) - t0 ))
    local status="ok"
    [ $rc -ne 0 ] && status="failed (exit $rc)"
    [ $rc -eq 124 ] && status="timed out after ${box}s"
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$dt" "$*" >> "$PHASES"
    return 0
}
skip() { printf '%s\tskipped\t0\t%s\n' "$1" "$2" >> "$PHASES"; }

# 0. set-up
if [ "$DRY" = 1 ]; then
    skip setup "dry run: the current environment is used as it is"
else
    phase setup 150 bash -c "
        set -e
        if ls tools/wheels/*.whl >/dev/null 2>&1; then
            $PY -m pip install --no-index --no-deps --quiet tools/wheels/*.whl
        fi
        $PY -m pip install --no-deps --no-build-isolation --quiet -e .
        $PY -c 'import torch, cendetect; print(torch.__version__, torch.cuda.get_device_name(0))'
    "
fi

# 1. the CUDA tests
phase tests 240 "$PY" -m pytest -m cuda -p no:cacheprovider -q -rs \
    --junitxml="$OUT/junit.xml" tests

# 2. the CUDA benchmarks
if [ "$DRY" = 1 ]; then
    skip bench "dry run: no CUDA device"
else
    phase bench 180 "$PY" benchmarks/bench_engines.py --device cuda \
        --models mask_rcnn_r50_fpn,default --sizes 1024x1024 --batches 1,8 \
        --engines eager,eager-fp16,torchscript-fp16,aoti-fp16 --peers torchvision \
        --repeats 5 --warmup 2 --json "$OUT/bench.json"
fi

# 3. the report
"$PY" - "$OUT" "$DRY" <<'PYEOF'
import datetime, json, platform, sys
import xml.etree.ElementTree as ET
from pathlib import Path

out, dry = Path(sys.argv[1]), sys.argv[2] == "1"
lines = [f"# GPU check{' (dry run)' if dry else ''}", ""]
lines.append(f"date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}")
try:
    import torch
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    lines.append(f"torch {torch.__version__}, device: {dev}, python {platform.python_version()}")
except Exception as exc:  # noqa: BLE001 - the report must still be written
    lines.append(f"torch not importable: {exc}")
lines += ["", "| phase | status | seconds | command / note |", "|---|---|---|---|"]
for row in (out / "phases.tsv").read_text().splitlines():
    name, status, secs, note = (row.split("\t") + ["", "", "", ""])[:4]
    lines.append(f"| {name} | {status} | {secs} | `{note[:120]}` |")
junit = out / "junit.xml"
if junit.is_file():
    root = ET.parse(junit).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is not None:
        a = suite.attrib
        lines += ["", f"CUDA tests: {a.get('tests')} collected, {a.get('failures')} failed, "
                      f"{a.get('errors')} errors, {a.get('skipped')} skipped"]
bench = out / "bench.log"
if bench.is_file():
    table = [l for l in bench.read_text().splitlines() if l.startswith("|")]
    if table:
        lines += ["", "## Benchmark", ""] + table
(out / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PYEOF
