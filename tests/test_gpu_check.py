"""benchmarks/gpu_check.sh and its report, on a CPU: the report's verdicts from hand-made rows, and the script itself
run end to end with no step selected (it must still probe the checkout and write its report)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("gpu_check_report", ROOT / "benchmarks" / "gpu_check_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _loss_row(loss, items, positions, seconds, peak_mib, params=None, status="ok", value=10.0):
    return {"loss": loss, "num_items": items, "n_positions": positions, "dim": 64, "params": params or {},
            "status": status, "median_time_s": seconds, "peak_bytes": int(peak_mib * MIB), "loss_value": value,
            "note": ""}  # fmt: skip


def _step_dir(raw: Path, name: str, precision: str, kind: str, rows) -> None:
    folder = raw / "steps" / name
    (folder / kind).mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"step": name, "precision": precision, "positions": ""}))
    data = {"rows": rows} if kind == "bench-loss" else rows
    (folder / kind / f"{kind}-1.json").write_text(json.dumps(data))


def test_the_report_puts_each_target_beside_its_measured_value(report, tmp_path):
    out, raw = tmp_path / "out", tmp_path / "raw"
    out.mkdir()
    (out / "steps.tsv").write_text("cuda-tests\t0\t40\t120\tpytest\nfp32 grid\t124\t40\t40\trece-bench bench-loss\n")
    available = {"bf16": ["ce_chunked", "sce"], "fp32": ["ce_chunked", "rece", "sce"]}
    env = {"device": "cuda", "sizes": {"c_main": 1000, "n_small": 64}, "features": {"available": available}}
    (out / "env.json").write_text(json.dumps(env))
    r38 = {"n_extra_chunks": 3, "rounds": 8}
    _step_dir(raw, "every loss fp32", "fp32", "bench-loss", [
        _loss_row("rece", 1000, 64, 0.040, 600, {**r38, "kernel": "torch"}),  # 40 ms, 600 MiB: both targets met
        _loss_row("ce_chunked", 1000, 64, 0.050, 200, {"kernel": "torch"}, value=10.0),
    ])  # fmt: skip
    _step_dir(raw, "every loss bf16", "bf16", "bench-loss", [
        _loss_row("ce_chunked", 1000, 64, 0.030, 150, {"kernel": "torch"}, value=8.0),  # 20% off fp32
    ])  # fmt: skip
    _step_dir(raw, "triton fp32", "fp32", "bench-loss", [
        _loss_row("ce_chunked", 1000, 64, 0.030, 200, {"kernel": "triton"}),  # 30 ms: over 27.6 ms
        _loss_row("rece", 1000, 64, 0.010, 250, {**r38, "kernel": "triton"}),
    ])  # fmt: skip
    step = {"batch_size": 256, "positions": 1000, "positions_per_s": 1.0, "peak_bytes": MIB, "step_times_s": []}
    _step_dir(raw, "bench-step batch 256 fp32", "fp32", "bench-step", [
        {**step, "loss": "ce", "params": {}, "step_time_s": 0.1, "peak_bytes": 40 * MIB},
        {**step, "loss": "rece", "params": {**r38, "kernel": "torch"}, "step_time_s": 0.25},  # 0.4x CE's speed
    ])  # fmt: skip
    report.main(out, raw)
    md = (out / "gpu_check.md").read_text()
    assert "| RECE (3,8) C 1,000 N 64 fp32 time | 40.0 ms | <= 45.0 ms | PASS |" in md
    assert "| RECE (3,8) C 1,000 N 64 fp32 peak | 600.0 MiB | <= 700 MiB | PASS |" in md
    assert "RECE (3,8) speed / CE speed | 0.40x | >= 0.5x | MISS |" in md
    assert "| exact CE (ce_chunked triton) time, C 1,000 N 64 fp32 | 30.0 ms | <= 27.6 ms | MISS |" in md
    assert "| RECE (3,8) triton time, C 1,000 N 64 fp32 | 10.0 ms | <= 15.0 ms | PASS |" in md
    assert "| ce_chunked | - | torch | 1,000 | 64 | fp32 | ok | 50.0 ms |" in md  # the grid keeps the torch rows
    assert "20.00% MISS" in md  # bf16 value against fp32's
    assert "| sce | - | no row (see the log) | - | - | - | no row (see the log) |" in md  # available, yet no row
    assert "| fp32 grid | stopped at its limit | 40 | 40 |" in md
    summary = json.loads((out / "gpu_check.json").read_text())
    assert len(summary["bench_loss"]) == 5 and summary["bench_loss"][0]["kernel"] in ("torch", "triton")


def test_a_section_that_cannot_be_built_says_so_and_the_others_are_written(report, tmp_path):
    out, raw = tmp_path / "out", tmp_path / "raw"
    out.mkdir()
    _step_dir(raw, "bench-step batch 256 fp32", "fp32", "bench-step", [{"loss": "ce", "params": {}}])  # no times
    report.main(out, raw)
    md = (out / "gpu_check.md").read_text()
    assert "this section failed:" in md
    assert "## 8. Beauty" in md and "## Commands" in md


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash, timeout")
def test_the_script_with_no_step_selected_still_probes_and_reports(tmp_path):
    """ONLY names a group that does not exist: no step runs, yet the environment, the features the checkout offers
    and the report are written, and OUTDIR keeps to the files that come back from a device machine."""
    out = tmp_path / "gc"
    env = {**os.environ, "DEVICE": "cpu", "QUICK": "1", "ONLY": "none", "PY": sys.executable, "TOTAL_S": "60",
           "WHEELS": str(tmp_path / "no-wheels")}  # fmt: skip
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(out)], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "env.json",
        "gpu_check.json",
        "gpu_check.md",
        "log.txt",
        "steps.tsv",
    ]
    features = json.loads((out / "env.json").read_text())["features"]
    assert "ce" in features["available"]["fp32"] and "--device" in features["options"]["bench-loss"]
    assert features["errors"] == []
    md = (out / "gpu_check.md").read_text()
    assert "## 1. CUDA tests" in md and "did not run" in md
    assert (tmp_path / "gc.raw" / "features.sh").exists()  # raw files beside OUTDIR, not in it


@pytest.mark.parametrize("script", sorted((ROOT / "benchmarks").glob("*.sh")), ids=lambda p: p.name)
def test_every_benchmark_script_parses(script):
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
