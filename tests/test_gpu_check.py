"""tools/gpu_check.sh --dry-run on this CPU machine: the script runs its phases, writes its
report (JUnit XML of the CUDA tests, all skipped here; the Markdown summary), and cannot rot
between the rare sessions that have a GPU."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_dry_run_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = subprocess.run(
        ["bash", str(ROOT / "tools" / "gpu_check.sh"), "--dry-run", "--out", str(out),
         "--budget-s", "300"],
        capture_output=True, text=True, timeout=400, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = (out / "summary.md").read_text()
    assert "GPU check (dry run)" in summary
    rows = {
        r.split("\t")[0]: r.split("\t")[1] for r in (out / "phases.tsv").read_text().splitlines()
    }
    assert rows["setup"] == "skipped" and rows["bench"] == "skipped"
    assert rows["tests"] == "ok", (out / "tests.log").read_text()[-2000:]
    suite = ET.parse(out / "junit.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    n, skipped = int(suite.attrib["tests"]), int(suite.attrib["skipped"])
    assert n >= 12 and skipped == n  # every CUDA test collected, each skipped without CUDA
    assert f"{n} collected" in summary
