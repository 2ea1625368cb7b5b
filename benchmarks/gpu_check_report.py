"""The report of benchmarks/gpu_check.sh: OUTDIR/gpu_check.md and OUTDIR/gpu_check.json from what the steps left.

Usage: python benchmarks/gpu_check_report.py OUTDIR RAW   (RAW holds bench-loss/*.json and bench-step/*.json)
Reads only files; imports nothing of the project, so it runs whatever state the environment is in.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

PAPER_MEMORY_CLAIM = 12.0  # "up to 12x less training memory" (RECE abstract)


def mib(n_bytes: float | None) -> str:
    return "-" if n_bytes is None else f"{n_bytes / 2**20:,.1f} MiB"


def params_label(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "-"


def read_steps(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        name, rc, seconds, limit = (line.split("\t") + ["", "", "", ""])[:4]
        known = {"0": "ok", "124": "stopped at its limit", "skipped": "skipped (no time left)",
                 "5": "no tests ran (pytest exit 5: all skipped)"}  # fmt: skip
        status = known.get(rc, f"exit {rc}")
        rows.append({"step": name, "exit": rc, "status": status, "seconds": seconds, "limit_s": limit})
    return rows


def read_tests(path: Path) -> dict:
    if not path.exists():
        return {"ran": False}
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    failed = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in suite.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    skipped = sorted({s.get("message", "") for s in suite.iter("skipped")})
    return {"ran": True, **counts, "time_s": float(suite.get("time", 0)), "failed": failed, "skip_reasons": skipped}


def read_json_rows(folder: Path, key: str | None) -> list[dict]:
    rows = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            print(f"unreadable {path}: {exc}", file=sys.stderr)
            continue
        for row in data[key] if key else data:
            rows.append({**row, "file": path.name})
    return rows


def loss_table(rows: list[dict]) -> list[str]:
    out = ["| precision | loss | params | C | status | peak (inputs included) | beyond inputs | median s | "
           "CE peak / this |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    precision = lambda r: r.get("precision", "fp32")  # noqa: E731 - rows written before precisions were fp32
    ce_peak = {
        (r["num_items"], precision(r)): r["peak_bytes"] for r in rows if r["loss"] == "ce" and r.get("peak_bytes")
    }
    for r in sorted(rows, key=lambda r: (r["num_items"], precision(r), r["loss"], params_label(r["params"]))):
        ratio, key = "-", (r["num_items"], precision(r))
        if r.get("peak_bytes") and key in ce_peak and r["loss"] != "ce":  # CE at the same size and precision
            ratio = f"{ce_peak[key] / r['peak_bytes']:.1f}x"
        status = r["status"] if r["status"] == "ok" else (r.get("note") or r["status"])
        median = "-" if r.get("median_time_s") is None else f"{r['median_time_s']:.4f}"
        peaks = f"{mib(r.get('peak_bytes'))} | {mib(r.get('peak_beyond_inputs_bytes'))}"
        label = f"{precision(r)} | {r['loss']} | {params_label(r['params'])} | {r['num_items']:,}"
        out.append(f"| {label} | {status} | {peaks} | {median} | {ratio} |")
    return out


def step_table(rows: list[dict]) -> tuple[list[str], list[dict]]:
    out = ["| batch | loss | params | positions | step s (min-max) | positions/s | peak (one step) | CE peak / this "
           "| CE time / this |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    claims = []
    for batch in sorted({r["batch_size"] for r in rows}):
        group = [r for r in rows if r["batch_size"] == batch]
        ce = next((r for r in group if r["loss"] == "ce"), None)
        for r in group:
            peak_ratio = time_ratio = "-"
            if ce is not None and r is not ce:
                peak_ratio = f"{ce['peak_bytes'] / r['peak_bytes']:.1f}x"
                time_ratio = f"{ce['step_time_s'] / r['step_time_s']:.2f}x"
                if r["loss"] == "rece":
                    ratio = ce["peak_bytes"] / r["peak_bytes"]
                    claims.append({"batch": batch, "rece_params": r["params"], "ce_peak_bytes": ce["peak_bytes"],
                                   "rece_peak_bytes": r["peak_bytes"], "ratio": ratio,
                                   "at_least_12x": ratio >= PAPER_MEMORY_CLAIM})  # fmt: skip
            times = r.get("step_times_s") or [r["step_time_s"]]
            out.append(f"| {batch} | {r['loss']} | {params_label(r['params'])} | {r['positions']:,.0f} | "
                       f"{r['step_time_s']:.4f} ({min(times):.4f}-{max(times):.4f}) | {r['positions_per_s']:,.0f} | "
                       f"{mib(r['peak_bytes'])} | {peak_ratio} | {time_ratio} |")  # fmt: skip
    return out, claims


def main(outdir: Path, raw: Path) -> None:
    env = json.loads((outdir / "env.json").read_text()) if (outdir / "env.json").exists() else {}
    steps = read_steps(outdir / "steps.tsv")
    tests = read_tests(outdir / "cuda_tests.xml")
    loss_rows = read_json_rows(raw / "bench-loss", "rows")
    step_rows = read_json_rows(raw / "bench-step", None)
    lines = ["# GPU check (benchmarks/gpu_check.sh)", ""]
    lines += [f"- {key}: {value}" for key, value in env.items()]
    lines += ["", "## Steps", "", "| step | status | seconds | limit s |", "|---|---|---|---|"]
    lines += [f"| {s['step']} | {s['status']} | {s['seconds']} | {s['limit_s']} |" for s in steps]
    lines += ["", "## CUDA tests (tests/test_cuda.py)", ""]
    if tests["ran"]:
        passed = tests["tests"] - tests["failures"] - tests["errors"] - tests["skipped"]
        lines.append(f"{passed} passed, {tests['failures']} failed, {tests['errors']} errors, {tests['skipped']} "
                     f"skipped of {tests['tests']} in {tests['time_s']:.1f} s")  # fmt: skip
        lines += [f"- failed: `{name}`" for name in tests["failed"]]
        lines += [f"- skipped: {reason}" for reason in tests["skip_reasons"] if reason]
    else:
        lines.append("did not run")
    heading = "## The losses alone (bench-loss: forward+backward, D 64; peak: CUDA allocator, CPU live tensors)"
    lines += ["", heading, ""]
    lines += loss_table(loss_rows) if loss_rows else ["no rows"]
    table, claims = step_table(step_rows) if step_rows else (["no rows"], [])
    lines += ["", "## A whole training step (bench-step: SASRec forward, loss, backward, Adam)", "", *table, ""]
    lines += ["## The paper's 12x (CE peak / RECE peak of a whole step at the same batch)", ""]
    for c in claims:
        verdict = "at least" if c["at_least_12x"] else "below"
        lines.append(f"- batch {c['batch']}, RECE {params_label(c['rece_params'])}: {mib(c['ce_peak_bytes'])} / "
                     f"{mib(c['rece_peak_bytes'])} = {c['ratio']:.1f}x, {verdict} 12x")  # fmt: skip
    if not claims:
        lines.append("- no CE and RECE rows at the same batch")
    (outdir / "gpu_check.md").write_text("\n".join(lines) + "\n")
    summary = {"env": env, "steps": steps, "cuda_tests": tests, "bench_loss": loss_rows, "bench_step": step_rows,
               "memory_claim": claims}  # fmt: skip
    (outdir / "gpu_check.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
