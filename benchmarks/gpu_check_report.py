"""The report of benchmarks/gpu_check.sh: OUTDIR/gpu_check.md and OUTDIR/gpu_check.json from what the steps left.

Usage: python benchmarks/gpu_check_report.py OUTDIR RAW
  OUTDIR: env.json, steps.tsv, cuda_tests.xml (what the script wrote there);
  RAW: steps/<step>/{meta.json, bench-loss/*.json, bench-step/*.json}, mission/ (runs, report.md), beauty/,
  kernels_bench.txt, profile/.
One table per question, each target beside its measured value with PASS or MISS ("not measured" where the step did
not run or was cut). Reads only files and imports nothing of the project, so it runs whatever state the checkout is
in; a section that fails says so and the others are still written.
"""

from __future__ import annotations

import json
import sys
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

MIB = 2**20
PAPER_MEMORY_CLAIM = 12.0  # "up to 12x less training memory" (RECE abstract)
# The sizes of a full run; a QUICK run's come from env.json (sizes) in main.
S = SimpleNamespace(c_main=173_511, c_big=1_000_000, n_small=8_192, n_big=51_200, big_batch=256, set="synth-gowalla")
# Targets of the issues (their numbers are the H200 figures of ../shared/reference/GPU.md, main at a35faee).
ISSUE19 = {"rece38_ms": 45.0, "rece38_mib": 700.0, "step_speed": 0.5}
ISSUE22 = {"exact_ms": 27.6, "exact_mib": 250.0, "rece38_ms": 15.0, "rece38_mib": 300.0, "cce_n51200_ms": 139.0}
BEAUTY_REF = {"rece": (6.9, 18.9 * 1024), "ce": (1.75, 20.6 * 1024)}  # s an epoch, MiB peak (GPU.md)


def mib(n_bytes: float | None) -> str:
    return "-" if n_bytes is None else f"{n_bytes / MIB:,.1f} MiB"


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:,.1f} ms"


def params_label(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "-"


def verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("PASS" if ok else "MISS")


# ---- reading ----


def read_steps(path: Path) -> list[dict]:
    if not path.exists():
        return []
    known = {
        "0": "ok",
        "124": "stopped at its limit",
        "137": "killed at its limit",
        "5": "no tests ran (pytest exit 5: all skipped)",
        "2": "exit 2 (refused: see the log)",
    }
    rows = []
    for line in path.read_text().splitlines():
        name, rc, seconds, limit, command = (line.split("\t") + [""] * 5)[:5]
        status = known.get(rc, rc if rc.startswith(("skipped", "no ")) else f"exit {rc}")
        rows.append(
            {"step": name, "exit": rc, "status": status, "seconds": seconds, "limit_s": limit, "command": command}
        )
    return rows


def read_tests(path: Path) -> dict:
    if not path.exists():
        return {"ran": False}
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:  # a run killed while pytest wrote it
        return {"ran": False, "error": str(exc)}
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    failed = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in suite.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    skipped = sorted({s.get("message", "") for s in suite.iter("skipped")})
    return {"ran": True, **counts, "time_s": float(suite.get("time", 0)), "failed": failed, "skip_reasons": skipped}


def read_json(path: Path) -> object | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"unreadable {path}: {exc}", file=sys.stderr)
        return None


def read_rows(raw: Path, kernel_losses: tuple[str, ...] = ()) -> tuple[list[dict], list[dict]]:
    """bench-loss and bench-step rows of every step folder, each with its step, precision and kernel (``default``
    for a loss of ``kernel_losses`` run without a kernel parameter: the loss chose)."""
    loss_rows, step_rows = [], []
    for meta_path in sorted((raw / "steps").glob("*/meta.json")):
        meta = read_json(meta_path) or {}
        folder = meta_path.parent
        for path in sorted((folder / "bench-loss").glob("*.json")):
            data = read_json(path) or {}
            for row in data.get("rows", []) if isinstance(data, dict) else []:
                loss_rows.append(annotate(row, meta, path, kernel_losses))
        for path in sorted((folder / "bench-step").glob("*.json")):
            data = read_json(path)
            for row in data if isinstance(data, list) else (data or {}).get("rows", []):
                step_rows.append(annotate(row, meta, path, kernel_losses))
    return loss_rows, step_rows


def annotate(row: dict, meta: dict, path: Path, kernel_losses: tuple[str, ...] = ()) -> dict:
    params = dict(row.get("params") or {})
    kernel = str(params.pop("kernel", "default" if row.get("loss") in kernel_losses else "torch"))
    return {
        **row,
        "precision": row.get("precision") or meta.get("precision", "fp32"),
        "kernel": kernel,
        "shape_params": params,
        "step": meta.get("step", "?"),
        "file": f"{path.parent.parent.name}/{path.name}",
    }


def op_counts(row: dict) -> str:
    """Whatever op counts the row carries (bench-loss --ops), e.g. ``ops 512, data_dependent_ops 0``."""
    found = {k: v for k, v in row.items() if "ops" in k.lower() and isinstance(v, (int, float))}
    nested = row.get("ops")
    if isinstance(nested, dict):
        found.update({k: v for k, v in nested.items() if isinstance(v, (int, float))})
    return ", ".join(f"{k} {v:,}" for k, v in found.items()) or "-"


# ---- finding rows ----


def is_config(row: dict, loss: str, n_ec: int | None = None, rounds: int | None = None) -> bool:
    if row.get("loss") != loss:
        return False
    if loss != "rece" or n_ec is None:
        return True
    p = row["shape_params"]
    return p.get("n_extra_chunks") == n_ec and p.get("rounds") == rounds


def find(
    rows: list[dict],
    loss: str,
    items: int,
    positions: int,
    precision: str,
    kernel: str = "torch",
    rece: tuple[int, int] | None = (3, 8),
) -> dict | None:
    """The measured row of that configuration (the last one, ok preferred), or None. Asked for the torch kernel,
    a row whose loss chose its own kernel (``default``) stands in where no explicit torch row exists."""
    n_ec, rounds = rece if (loss == "rece" and rece) else (None, None)
    match = [
        r
        for r in rows
        if is_config(r, loss, n_ec, rounds)
        and r.get("num_items") == items
        and r.get("n_positions") == positions
        and r["precision"] == precision
        and (r["kernel"] == kernel or (kernel == "torch" and r["kernel"] == "default"))
    ]
    match.sort(key=lambda r: r["kernel"] == kernel)  # an exact kernel last: it wins
    ok = [r for r in match if r.get("status") == "ok"]
    return (ok or match or [None])[-1]


def measured(row: dict | None, key: str) -> float | None:
    return None if row is None or row.get("status") != "ok" else row.get(key)


def target_row(what: str, value: float | None, fmt: Callable[[float | None], str], target: str, ok: bool | None) -> str:
    return f"| {what} | {fmt(value)} | {target} | {verdict(None if value is None else ok)} |"


TARGET_HEAD = ["| what | measured | target | verdict |", "|---|---|---|---|"]


# ---- sections ----


def env_section(env: dict) -> list[str]:
    lines = [f"- {key}: {value}" for key, value in env.items() if key != "features"]
    feats = env.get("features") or {}
    opts = feats.get("options") or {}
    for option in ("--precision", "--ops", "--profile", "--threads"):
        having = [name for name, names in opts.items() if option in names]
        lines.append(f"- commands with {option}: {', '.join(having) or 'none'}")
    for precision, losses in (feats.get("available") or {}).items():
        lines.append(f"- losses available at {precision}: {' '.join(losses)}")
    unavailable: dict[str, dict[str, list[str]]] = {}  # loss -> reason -> precisions
    for precision, reasons in (feats.get("unavailable") or {}).items():
        for loss, why in reasons.items():
            unavailable.setdefault(loss, {}).setdefault(why, []).append(precision)
    for loss, reasons in unavailable.items():
        lines += [f"- {loss} unavailable at {', '.join(precisions)}: {why}" for why, precisions in reasons.items()]
    lines.append(f"- losses with a kernel parameter: {' '.join(feats.get('kernel_losses') or []) or 'none'}")
    lines += [f"- feature probe error: {error}" for error in feats.get("errors") or []]
    return lines


def steps_section(steps: list[dict]) -> list[str]:
    lines = ["| step | status | seconds | limit s |", "|---|---|---|---|"]
    lines += [f"| {s['step']} | {s['status']} | {s['seconds']} | {s['limit_s']} |" for s in steps]
    return lines


def tests_section(tests: dict) -> list[str]:
    if not tests.get("ran"):
        return ["did not run" + (f" ({tests['error']})" if tests.get("error") else "")]
    passed = tests["tests"] - tests["failures"] - tests["errors"] - tests["skipped"]
    failed = tests["failures"] + tests["errors"]
    ran = tests["tests"] - tests["skipped"]
    lines = [
        f"{passed} passed, {tests['failures']} failed, {tests['errors']} errors, {tests['skipped']} skipped of "
        f"{tests['tests']} in {tests['time_s']:.1f} s: 0 failed expected, "
        f"{verdict(None if ran == 0 else failed == 0)}",
        "",
    ]
    lines += [f"- failed: `{name}`" for name in tests["failed"]]
    lines += [f"- skipped: {reason}" for reason in tests["skip_reasons"] if reason]
    return lines


def mission_section(raw: Path, steps: list[dict]) -> tuple[list[str], list[dict]]:
    lines = ["| command | exit | seconds | verdict |", "|---|---|---|---|"]
    for s in steps:
        if s["step"].startswith(("prepare synthetic", "prepare mission", "run rece --budget", "report")):
            ok = None if s["exit"].startswith("skipped") else s["exit"] == "0"
            lines.append(f"| {s['step']} | {s['status']} | {s['seconds']} | {verdict(ok)} |")
    runs = [r for r in (read_json(p) for p in sorted((raw / "mission" / "runs").glob("*.json"))) if r]
    lines += [
        "",
        "| run | precision | status | batch | peak | device peak | NDCG@10 | epochs | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        p = r.get("params", {})
        precision = r.get("precision") or p.get("precision") or "fp32 (not recorded)"
        ndcg = (r.get("metrics") or {}).get("ndcg@10")
        lines.append(
            f"| {r.get('run_id')} | {precision} | {r.get('status')} {r.get('message') or ''} | "
            f"{p.get('batch_size')} | {mib(r.get('peak_bytes'))} | {mib(r.get('device_peak_bytes'))} | "
            f"{'-' if ndcg is None else f'{ndcg:.4f}'} | {r.get('epochs')} | "
            f"{r.get('train_time_s') or 0:.1f} |"
        )
    report = raw / "mission" / "report.md"
    if report.exists() and report.read_text().strip():
        lines += ["", "`rece-bench report --format markdown` on these runs:", "", report.read_text().strip()]
    return lines, runs


def autocast_section(rows: list[dict], available: dict[str, list[str]]) -> list[str]:
    """Every loss at S.c_main, S.n_small in bf16 (autocast) beside fp32, from the 'every loss' steps. A loss
    available at a precision whose step ran but left no row of it (it raised: see the log) shows 'no row'."""
    mine = [r for r in rows if r["step"].startswith("every loss")]
    ran = {r["precision"] for r in mine}
    lines = [
        "| loss | params | bf16 status | bf16 time | bf16 peak | bf16 ops | fp32 status | fp32 time | fp32 peak "
        "| fp32 ops | bf16 value vs fp32 (<= 1%) | runs under autocast |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    expected = [loss for precision in ("bf16", "fp32") if precision in ran for loss in available.get(precision, [])]
    for loss in dict.fromkeys([r["loss"] for r in mine] + expected):
        by = {r["precision"]: r for r in mine if r["loss"] == loss}
        missing = {p for p in ("bf16", "fp32") if p in ran and p not in by and loss in available.get(p, [])}
        bf, fp = by.get("bf16"), by.get("fp32")
        diff, diff_ok = "-", None
        if measured(bf, "loss_value") is not None and measured(fp, "loss_value"):
            rel = abs(bf["loss_value"] - fp["loss_value"]) / abs(fp["loss_value"])
            diff_ok = rel <= 0.01
            diff = f"{rel:.2%} {verdict(diff_ok)}"
        cells = []
        for precision, r in (("bf16", bf), ("fp32", fp)):
            status = "no row (see the log)" if precision in missing else "-"
            if r is not None:
                status = r["status"] if r["status"] == "ok" else (r.get("note") or r["status"])
            cells += [
                status,
                ms(measured(r, "median_time_s")),
                mib(measured(r, "peak_bytes")),
                "-" if r is None else op_counts(r),
            ]
        params = params_label((bf or fp or {}).get("shape_params") or {})
        runs = False if "bf16" in missing else (None if bf is None else bf.get("status") == "ok")
        lines.append(f"| {loss} | {params} | {' | '.join(cells)} | {diff} | {verdict(runs)} |")
    return lines if mine else ["no rows"]


def issue19_section(loss_rows: list[dict], step_rows: list[dict]) -> list[str]:
    r38 = find(loss_rows, "rece", S.c_main, S.n_small, "fp32")
    t, m = measured(r38, "median_time_s"), measured(r38, "peak_bytes")
    lines = list(TARGET_HEAD)
    lines.append(
        target_row(
            f"RECE (3,8) C {S.c_main:,} N {S.n_small:,} fp32 time",
            t,
            ms,
            f"<= {ISSUE19['rece38_ms']} ms",
            t is not None and t * 1e3 <= ISSUE19["rece38_ms"],
        )
    )
    lines.append(
        target_row(
            f"RECE (3,8) C {S.c_main:,} N {S.n_small:,} fp32 peak",
            m,
            mib,
            f"<= {ISSUE19['rece38_mib']:.0f} MiB",
            m is not None and m / MIB <= ISSUE19["rece38_mib"],
        )
    )
    for precision in ("fp32", "bf16"):
        ce = next(
            (
                r
                for r in step_rows
                if r["loss"] == "ce" and r["precision"] == precision and r.get("batch_size") == S.big_batch
            ),
            None,
        )
        rece = next(
            (
                r
                for r in step_rows
                if is_config(r, "rece", 3, 8)
                and r["kernel"] in ("torch", "default")
                and r["precision"] == precision
                and r.get("batch_size") == S.big_batch
            ),
            None,
        )
        speed = None if ce is None or rece is None else ce["step_time_s"] / rece["step_time_s"]
        lines.append(
            target_row(
                f"whole step, {S.set} batch {S.big_batch} {precision}: RECE (3,8) speed / CE speed",
                speed,
                lambda v: "-" if v is None else f"{v:.2f}x",
                f">= {ISSUE19['step_speed']}x",
                speed is not None and speed >= ISSUE19["step_speed"],
            )
        )
    lines += [
        "",
        "The grid (bench-loss forward+backward, D 64; peak: CUDA allocator, inputs and gradients included):",
        "",
    ]
    wanted = [r for r in loss_rows if r["loss"] in ("rece", "ce_chunked", "sce") and r["kernel"] != "triton"]
    return lines + grid_table(wanted)


def grid_table(rows: list[dict]) -> list[str]:
    if not rows:
        return ["no rows"]
    lines = [
        "| loss | params | kernel | C | N | precision | status | time | peak | beyond inputs | ops | step |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def key(r: dict) -> tuple:
        return (
            r.get("num_items", 0),
            r.get("n_positions", 0),
            r["precision"],
            r["loss"],
            params_label(r["shape_params"]),
        )

    for r in sorted(rows, key=key):
        status = r["status"] if r["status"] == "ok" else (r.get("note") or r["status"])
        lines.append(
            f"| {r['loss']} | {params_label(r['shape_params'])} | {r['kernel']} | {r.get('num_items', 0):,} | "
            f"{r.get('n_positions', 0):,} | {r['precision']} | {status} | {ms(measured(r, 'median_time_s'))} | "
            f"{mib(measured(r, 'peak_bytes'))} | {mib(measured(r, 'peak_beyond_inputs_bytes'))} | "
            f"{op_counts(r)} | {r['step']} |"
        )
    return lines


def issue20_section(loss_rows: list[dict]) -> list[str]:
    lines = [
        "GPU.md (a35faee) at C 173,511, N 51,200, bf16: CCE 25.1.1 139 ms / 178 MiB, Liger 254 ms / 187 MiB, "
        "full CE 86 ms / 50,981 MiB.",
        "",
        "| C | N | precision | loss | params | time | peak | CCE time / this | CCE peak / this |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    seen = False
    for items in (S.c_main, S.c_big):
        for positions in (S.n_small, S.n_big):
            for precision in ("bf16", "fp32"):
                cce = find(loss_rows, "cce", items, positions, precision)
                for loss in ("cce", "liger_ce", "ce", "ce_chunked", "rece", "sce"):
                    r = find(loss_rows, loss, items, positions, precision)
                    if r is None:
                        continue
                    seen = True
                    t, m = measured(r, "median_time_s"), measured(r, "peak_bytes")
                    ct, cm = measured(cce, "median_time_s"), measured(cce, "peak_bytes")
                    tr = "-" if t is None or ct is None else f"{ct / t:.2f}x"
                    mr = "-" if m is None or cm is None else f"{cm / m:.2f}x"
                    status = "" if r["status"] == "ok" else f" ({r.get('note') or r['status']})"
                    lines.append(
                        f"| {items:,} | {positions:,} | {precision} | {loss} | {params_label(r['shape_params'])} | "
                        f"{ms(t)}{status} | {mib(m)} | {tr} | {mr} |"
                    )
    return lines if seen else lines[:2] + ["no rows"]


def issue22_section(loss_rows: list[dict], raw: Path) -> list[str]:
    lines = list(TARGET_HEAD)
    ce_t = find(loss_rows, "ce_chunked", S.c_main, S.n_small, "fp32", "triton")
    r_t = find(loss_rows, "rece", S.c_main, S.n_small, "fp32", "triton")
    for what, row, key, limit in (
        ("exact CE (ce_chunked triton) time", ce_t, "median_time_s", ISSUE22["exact_ms"] / 1e3),
        ("exact CE (ce_chunked triton) peak", ce_t, "peak_bytes", ISSUE22["exact_mib"] * MIB),
        ("RECE (3,8) triton time", r_t, "median_time_s", ISSUE22["rece38_ms"] / 1e3),
        ("RECE (3,8) triton peak", r_t, "peak_bytes", ISSUE22["rece38_mib"] * MIB),
    ):
        value = measured(row, key)
        fmt = ms if key == "median_time_s" else mib
        lines.append(
            target_row(
                f"{what}, C {S.c_main:,} N {S.n_small:,} fp32",
                value,
                fmt,
                f"<= {fmt(limit)}",
                value is not None and value <= limit,
            )
        )
    full = measured(find(loss_rows, "ce", S.c_big, S.n_small, "fp32"), "median_time_s")
    exact = measured(find(loss_rows, "ce_chunked", S.c_big, S.n_small, "fp32", "triton"), "median_time_s")
    rece = measured(find(loss_rows, "rece", S.c_big, S.n_small, "fp32", "triton"), "median_time_s")
    lines.append(
        target_row(
            f"C {S.c_big:,} N {S.n_small:,} fp32: exact CE triton <= full CE ({ms(full)})",
            exact,
            ms,
            "<= full CE",
            None if full is None else exact is not None and exact <= full,
        )
    )
    lines.append(
        target_row(
            f"C {S.c_big:,} N {S.n_small:,} fp32: RECE (3,8) triton <= exact CE triton ({ms(exact)})",
            rece,
            ms,
            "<= exact CE",
            None if exact is None else rece is not None and rece <= exact,
        )
    )
    cce = measured(find(loss_rows, "cce", S.c_main, S.n_big, "bf16"), "median_time_s")
    bf = measured(find(loss_rows, "ce_chunked", S.c_main, S.n_big, "bf16", "triton"), "median_time_s")
    limit = cce if cce is not None else ISSUE22["cce_n51200_ms"] / 1e3
    source = f"CCE measured {ms(cce)}" if cce is not None else "CCE 139 ms (GPU.md)"
    lines.append(
        target_row(
            f"bf16 C {S.c_main:,} N {S.n_big:,}: exact CE triton < CCE",
            bf,
            ms,
            f"< {source}",
            bf is not None and bf < limit,
        )
    )
    lines += [
        "",
        "torch against triton, same inputs:",
        "",
        "| loss | params | C | N | precision | torch time | torch peak | triton time | triton peak | torch / triton |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    triton_rows = [r for r in loss_rows if r["kernel"] == "triton"]
    if not triton_rows:
        lines[-2:] = ["no triton rows"]
    for r in triton_rows:
        rece = (r["shape_params"].get("n_extra_chunks"), r["shape_params"].get("rounds"))
        torch_row = find(loss_rows, r["loss"], r["num_items"], r["n_positions"], r["precision"], "torch", rece)
        tt, xt = measured(torch_row, "median_time_s"), measured(r, "median_time_s")
        ratio = "-" if tt is None or xt is None else f"{tt / xt:.2f}x"
        lines.append(
            f"| {r['loss']} | {params_label(r['shape_params'])} | {r['num_items']:,} | {r['n_positions']:,} | "
            f"{r['precision']} | {ms(tt)} | {mib(measured(torch_row, 'peak_bytes'))} | {ms(xt)} | "
            f"{mib(measured(r, 'peak_bytes'))} | {ratio} |"
        )
    bench = raw / "kernels_bench.txt"
    if bench.exists():
        text = bench.read_text().strip().splitlines()
        lines += ["", "`python -m rece_bench.kernels.bench` (last 60 lines):", "", "```", *text[-60:], "```"]
    return lines


def step_section(rows: list[dict]) -> tuple[list[str], list[dict]]:
    if not rows:
        return ["no rows"], []
    out = [
        "| step | precision | batch | loss | params | positions | step s (min-max) | positions/s | peak (one step) "
        "| CE peak / this | CE time / this |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    claims = []
    for step in dict.fromkeys(r["step"] for r in rows):
        group = [r for r in rows if r["step"] == step]
        ce = next((r for r in group if r["loss"] == "ce"), None)
        for r in group:
            peak_ratio = time_ratio = "-"
            if ce is not None and r is not ce:
                peak_ratio = f"{ce['peak_bytes'] / r['peak_bytes']:.1f}x"
                time_ratio = f"{ce['step_time_s'] / r['step_time_s']:.2f}x"
                if r["loss"] == "rece":
                    ratio = ce["peak_bytes"] / r["peak_bytes"]
                    claims.append(
                        {
                            "step": step,
                            "batch": r.get("batch_size"),
                            "rece_params": r["params"],
                            "ce_peak_bytes": ce["peak_bytes"],
                            "rece_peak_bytes": r["peak_bytes"],
                            "ratio": ratio,
                            "at_least_12x": ratio >= PAPER_MEMORY_CLAIM,
                        }
                    )
            times = r.get("step_times_s") or [r["step_time_s"]]
            out.append(
                f"| {step} | {r['precision']} | {r.get('batch_size')} | {r['loss']} | {params_label(r['params'])} | "
                f"{r.get('positions', 0):,.0f} | {r['step_time_s']:.4f} ({min(times):.4f}-{max(times):.4f}) | "
                f"{r.get('positions_per_s', 0):,.0f} | {mib(r.get('peak_bytes'))} | {peak_ratio} | {time_ratio} |"
            )
    out += ["", "The paper's 12x (CE peak / RECE peak of a whole step at the same batch):", ""]
    for c in claims:
        word = "at least" if c["at_least_12x"] else "below"
        out.append(
            f"- {c['step']}, RECE {params_label(c['rece_params'])}: {mib(c['ce_peak_bytes'])} / "
            f"{mib(c['rece_peak_bytes'])} = {c['ratio']:.1f}x, {word} 12x"
        )
    if not claims:
        out.append("- no CE and RECE rows in the same step")
    return out, claims


def beauty_section(raw: Path) -> tuple[list[str], list[dict]]:
    runs = [r for r in (read_json(p) for p in sorted((raw / "beauty" / "results" / "runs").glob("*.json"))) if r]
    if not runs:
        return ["no runs"], []
    lines = [
        "| loss | params | precision | status | epochs | train s (an epoch) | peak | device peak | GPU.md a35faee "
        "(s an epoch, peak) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        p = r.get("params", {})
        knobs = {k.removeprefix("loss."): v for k, v in p.items() if k.startswith("loss.")}
        ref = BEAUTY_REF.get(r.get("loss"))
        ref_text = "-" if ref is None else f"{ref[0]} s, {ref[1] / 1024:.1f} GiB"
        per_epoch = (r.get("train_time_s") or 0) / max(r.get("epochs") or 1, 1)
        lines.append(
            f"| {r.get('loss')} | batch {p.get('batch_size')}, d {p.get('dim')}, maxlen {p.get('max_len')}, "
            f"{params_label(knobs)} | {r.get('precision') or p.get('precision') or 'fp32'} | "
            f"{r.get('status')} | {r.get('epochs')} | {per_epoch:.2f} | {mib(r.get('peak_bytes'))} | "
            f"{mib(r.get('device_peak_bytes'))} | {ref_text} |"
        )
    return lines, runs


def profile_section(raw: Path) -> list[str]:
    files = sorted(p for p in (raw / "profile").rglob("*") if p.is_file() and p.suffix in (".txt", ".md", ""))
    if not files:
        return ["no profile"]
    text = files[0].read_text(errors="replace").splitlines()
    return [f"`{files[0].name}` (first 40 lines):", "", "```", *text[:40], "```"]


def commands_section(steps: list[dict], raw: Path) -> list[str]:
    """Every step's command as run; the script's wrapper of the CLI (RAW/rece-bench) shown as ``rece-bench``."""
    wrapper = str(raw / "rece-bench")
    lines = [f"(RAW = {raw})", "", "```"]
    for s in steps:
        if s["command"] not in ("", "-"):
            lines += [f"# {s['step']}", s["command"].replace(wrapper, "rece-bench")]
    return lines + ["```"]


def brief(run: dict) -> dict:
    """A run record without its per-epoch history (the report needs the result, not the curve)."""
    return {k: v for k, v in run.items() if k != "history"}


def keeping(build: Callable[[], tuple[list[str], list[dict]]], sink: list[dict]) -> Callable[[], list[str]]:
    """A section that also finds data for gpu_check.json: its lines for ``guarded``, its data into ``sink``."""

    def lines() -> list[str]:
        text, found = build()
        sink.extend(found)
        return text

    return lines


def guarded(title: str, build: Callable[[], list[str]]) -> list[str]:
    try:
        body = build()
    except Exception:  # the other sections must still be written
        body = ["this section failed:", "", "```", traceback.format_exc().strip(), "```"]
    return ["", f"## {title}", "", *body]


def main(outdir: Path, raw: Path) -> None:
    env = (read_json(outdir / "env.json") if (outdir / "env.json").exists() else None) or {}
    vars(S).update(env.get("sizes") or {})
    steps = read_steps(outdir / "steps.tsv")
    tests = read_tests(outdir / "cuda_tests.xml")
    loss_rows, step_rows = read_rows(raw, tuple((env.get("features") or {}).get("kernel_losses") or ()))
    mission_runs: list[dict] = []
    claims: list[dict] = []
    beauty_runs: list[dict] = []
    lines = ["# GPU check (benchmarks/gpu_check.sh)"]
    if env.get("quick"):
        lines += ["", f"QUICK run (sizes {env.get('sizes')}): the script's smoke run; the targets are for full sizes."]
    lines += guarded("Environment", lambda: env_section(env or {}))
    lines += guarded("Steps (exit code, seconds, limit)", lambda: steps_section(steps))
    lines += guarded("1. CUDA tests (tests/test_cuda.py)", lambda: tests_section(tests))
    lines += guarded(
        "2. The mission's commands on CUDA (prepare, run --budget 2GB --device cuda, report)",
        keeping(lambda: mission_section(raw, steps), mission_runs),
    )
    lines += guarded(
        f"3. Every loss under autocast (bench-loss, C {S.c_main:,}, N {S.n_small:,}, D 64)",
        lambda: autocast_section(loss_rows, (env.get("features") or {}).get("available") or {}),
    )
    lines += guarded("4. Issue 19: RECE at GPU speed", lambda: issue19_section(loss_rows, step_rows))
    lines += guarded("5. Issue 20: the exact kernels (CCE, Liger) beside ours", lambda: issue20_section(loss_rows))
    lines += guarded("6. Issue 22: Triton kernels (torch against triton)", lambda: issue22_section(loss_rows, raw))
    lines += guarded(
        "7. Whole training steps (bench-step: SASRec forward, loss, backward, Adam)",
        keeping(lambda: step_section(step_rows), claims),
    )
    lines += guarded(
        "8. Beauty, one epoch with the paper's configuration", keeping(lambda: beauty_section(raw), beauty_runs)
    )
    lines += guarded("Profile (bench-loss --profile)", lambda: profile_section(raw))
    lines += guarded("Commands", lambda: commands_section(steps, raw))
    (outdir / "gpu_check.md").write_text("\n".join(lines) + "\n")
    kernels_bench = read_json(raw / "kernels_bench.json") if (raw / "kernels_bench.json").exists() else None
    summary = {
        "env": env,
        "kernels_bench": kernels_bench,
        "steps": steps,
        "cuda_tests": tests,
        "bench_loss": loss_rows,
        "bench_step": step_rows,
        "mission_runs": [brief(r) for r in mission_runs],
        "beauty_runs": [brief(r) for r in beauty_runs],
        "memory_claim": claims,
    }
    (outdir / "gpu_check.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
