"""Run the numerics tests under the CPU code paths of other machines (the ISA matrix).

Usage (repo root, after ``./setup.sh``)::

    .venv/bin/python -m tests.isa_matrix                      # every level this CPU can run
    .venv/bin/python -m tests.isa_matrix --levels default avx2
    .venv/bin/python -m tests.isa_matrix --levels native -- -k parity   # extra pytest args

Each level (``tests/isa.py``: ``default``, ``avx2``, ``avx512``, ``avx512_bf16``, ``native``)
sets ``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA`` and ``MKL_ENABLE_INSTRUCTIONS``; a probe
first checks in a fresh interpreter that torch, oneDNN, oneMKL and Inductor really took that
path (a misspelt value is ignored by the libraries, which would test nothing), then pytest runs
the tests marked ``numerics`` (``tests/conftest.py``: the ones that compare floats with a
tolerance) in two workers, as ``./test.sh`` does. A level whose instructions this CPU lacks is
reported as such, not run. The table at the end goes into docs/testing.md with the CPU model.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.isa import ISA_LEVELS, cpu_model, missing_flags, probe

REPO = Path(__file__).resolve().parent.parent

#: what each level's probe must show (a substring of the library's own name for its path);
#: ``None``: whatever this CPU picks
EXPECTED = {
    "default": {"aten": "DEFAULT", "onednn": "SSE4.1", "mkl": "SSE4.2", "inductor": "scalar"},
    "avx2": {"aten": "AVX2", "onednn": "AVX2", "mkl": "AVX2", "inductor": "avx2"},
    "avx512": {
        "aten": "AVX512",
        "onednn": "AVX512BW",
        "mkl": "AVX-512",
        "inductor": "avx512",
    },
    "avx512_bf16": {
        "aten": "AVX512",
        "onednn": "bfloat16",
        "mkl": "AVX-512",
        "inductor": "avx512",
    },
    "native": None,
}


def _summary(output: str) -> dict[str, int]:
    """pytest's closing counts (``passed``, ``failed``, ``skipped``, ``error(s)``, ...)."""
    lines = [ln for ln in output.splitlines() if re.search(r"\d+ (passed|failed|error)", ln)]
    counts: dict[str, int] = {}
    if lines:
        for n, what in re.findall(r"(\d+) (\w+)", lines[-1]):
            counts[what.rstrip("s") if what == "errors" else what] = int(n)
    return counts


def run_level(name: str, pytest_args: list[str], workers: int, log_dir: Path) -> dict:
    """Probe and run one level; returns its row (pytest's output goes to ``log_dir/<name>.log``)."""
    level = ISA_LEVELS[name]
    row: dict = {"level": name, "like": level.like}
    lacking = missing_flags(level)
    if lacking:
        row["result"] = f"not run: this CPU lacks {', '.join(lacking)}"
        return row
    env = level.environ()
    found = probe(env)
    row["paths"] = found
    expected = EXPECTED[name]
    wrong = [
        f"{lib}: {found[lib]!r} (expected {want!r})"
        for lib, want in (expected or {}).items()
        if want.lower() not in found[lib].lower()
    ]
    if wrong:
        row["result"] = "not run: the variables did not take effect: " + "; ".join(wrong)
        return row
    cmd = [sys.executable, "-m", "pytest", "-m", "numerics", "-p", "no:cacheprovider"]
    if workers:
        cmd += ["-n", str(workers), "--dist", "loadfile", "--no-loadscope-reorder"]
    cmd += pytest_args
    start = time.monotonic()
    log = log_dir / f"{name}.log"
    with log.open("w") as f:  # written as pytest runs: `tail -f` shows the progress
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)
    row["seconds"] = round(time.monotonic() - start)
    output = log.read_text()
    row["counts"] = _summary(output)
    row["failures"] = [ln for ln in output.splitlines() if ln.startswith(("FAILED", "ERROR"))]
    row["result"] = "pass" if proc.returncode == 0 else f"FAIL (pytest exit {proc.returncode})"
    return row


def _table(rows: list[dict]) -> str:
    out = [
        "| level | ATen | oneDNN | oneMKL | Inductor | result | tests | time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p = r.get("paths", {})
        counts = ", ".join(f"{n} {w}" for w, n in r.get("counts", {}).items())
        secs = r.get("seconds")
        out.append(
            f"| {r['level']} | {p.get('aten', '-')} | {p.get('onednn', '-')} | "
            f"{p.get('mkl', '-')} | {p.get('inductor', '-')} | {r['result']} | {counts or '-'} | "
            f"{f'{secs // 60} min {secs % 60:02d} s' if secs is not None else '-'} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--levels", nargs="+", choices=list(ISA_LEVELS), default=list(ISA_LEVELS),
        help="levels to run (default: all, in order)",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers (0: none)")
    parser.add_argument("--log-dir", type=Path, default=REPO / "output" / "isa_matrix")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("pytest_args", nargs="*", help="after --: extra pytest arguments")
    args = parser.parse_args(argv)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {cpu_model()}", flush=True)
    rows = []
    for name in args.levels:
        print(f"[isa-matrix] {name} ...", flush=True)
        row = run_level(name, args.pytest_args, args.workers, args.log_dir)
        print(f"[isa-matrix] {name}: {row['result']} {row.get('counts', '')}", flush=True)
        for line in row.get("failures", []):
            print(f"    {line}", flush=True)
        rows.append(row)
    print(f"\nCPU: {cpu_model()}\n{_table(rows)}")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_model(), "rows": rows}, indent=2))
    ok = all(r["result"] == "pass" or r["result"].startswith("not run: this CPU") for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
