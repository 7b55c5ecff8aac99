"""Run the compositor's tests against an AddressSanitizer build of ``cendetect._compositor``.

Usage (repo root, Linux with gcc or clang)::

    .venv/bin/python -m tests.engine.asan [BUILD_DIR] [-- extra pytest args]

Builds the ``_compositor`` target with ``-DCENDETECT_SANITIZE=address`` into BUILD_DIR (default
``build/asan``), then runs ``pytest tests/engine`` in a child interpreter with the ASan runtime
and libstdc++ preloaded (``LD_PRELOAD``: Python itself is not instrumented) and the instrumented
module installed as ``cendetect._compositor`` before anything imports it. Leak detection is off:
the interpreter's own allocations at exit are not ours. Reports are written to
``BUILD_DIR/asan-report.*`` and printed; any report makes the run fail (non-zero exit). Not a
pytest test itself: it needs a compiler and takes a minute.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

BOOT = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("cendetect._compositor", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
sys.modules["cendetect._compositor"] = mod
import pytest
print("ASan module:", mod.__file__, flush=True)
sys.exit(pytest.main(sys.argv[2:]))
"""


def runtime_library(name: str) -> str:
    for cc in ("g++", "clang++"):
        try:
            out = subprocess.run(
                [cc, f"-print-file-name={name}"], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            continue
        if os.path.isabs(out) and os.path.exists(out):
            return out
    raise SystemExit(f"no {name} found (install gcc's libasan and libstdc++)")


def build(build_dir: Path) -> Path:
    cmake = [
        "cmake", "-S", str(REPO), "-B", str(build_dir), "-DCENDETECT_SANITIZE=address",
        "-DCMAKE_BUILD_TYPE=RelWithDebInfo", f"-DPython_EXECUTABLE={sys.executable}",
    ]  # fmt: skip
    subprocess.run(cmake, check=True)
    subprocess.run(["cmake", "--build", str(build_dir), "--target", "_compositor"], check=True)
    found = glob.glob(str(build_dir / "_compositor*.so"))
    if not found:
        raise SystemExit(f"no _compositor*.so in {build_dir}")
    return Path(found[0])


def main(argv: list[str]) -> int:
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = argv[: argv.index("--")] if "--" in argv else argv
    build_dir = Path(args[0]) if args else REPO / "build" / "asan"
    module = build(build_dir)
    env = dict(os.environ)
    # libstdc++ too: python is not linked with it, and ASan's __cxa_throw interceptor must find
    # the real one when it starts, or the first C++ exception (a ValueError here) aborts.
    env["LD_PRELOAD"] = f"{runtime_library('libasan.so')} {runtime_library('libstdc++.so')}"
    # Reports go to files: pytest captures fd 2, and an aborting process loses what it held.
    reports = build_dir / "asan-report"
    for old in glob.glob(f"{reports}.*"):
        os.remove(old)
    env["ASAN_OPTIONS"] = f"detect_leaks=0:abort_on_error=1:log_path={reports}"
    cmd = [sys.executable, "-c", BOOT, str(module), "-q", "-p", "no:cacheprovider"]
    cmd += [str(REPO / "tests" / "engine"), *extra]
    code = subprocess.run(cmd, env=env, cwd=REPO).returncode
    found = sorted(glob.glob(f"{reports}.*"))
    for path in found:
        print(f"==== {path}\n{Path(path).read_text()}", file=sys.stderr)
    print(f"AddressSanitizer reports: {len(found)}", file=sys.stderr)
    return code or (1 if found else 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
