"""The exact fused-CE kernels of other projects as losses: ``cce`` (Apple's Cut Cross-Entropy 25.1.1) and
``liger_ce`` (Liger Kernel 0.8.5's fused linear cross-entropy).

What runs on a CPU (triton 3.9, torch 2.13 CPU build):
- Liger's kernels run under Triton's interpreter (``TRITON_INTERPRET=1``, set before triton is imported, so in a
  subprocess): their value and both gradients are checked here against a dense float64 CE.
- CCE's do not: its forward kernel fails in its log-add-exp with ``InterpreterError: AttributeError("'NoneType'
  object has no attribute 'dtype'")`` (``libdevice.log1p`` has no interpreter implementation); without the
  interpreter, ``RuntimeError: 0 active drivers ([]). There should only be one.`` The subprocess below checks that
  this is still so: the day it runs, the test says to enable CCE's interpreter path and test its values too.
  (Its ``impl="torch_compile"`` fallback runs on a CPU, but it is torch.compile of the materialised logits, not
  CCE's kernels, and compiling takes ~20 s: not tested here.)
Everything else needs no kernel: the registry, the availability rules, the listing and the refusals through the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import rece_bench.losses.triton_libs as triton_libs
from rece_bench.budget.ladder import ladder_for
from rece_bench.cli import app
from rece_bench.errors import UserError
from rece_bench.losses import LOSSES, build_loss
from rece_bench.losses.base import check_available, ordered_losses
from rece_bench.losses.cards import CARDS

KERNEL_LOSSES = ("cce", "liger_ce")
REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def no_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


@pytest.fixture
def gpu_here(monkeypatch):
    """As on a machine with a CUDA GPU (only the availability rules look)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


# ---------------------------------------------------------------- registry and facts


def test_both_are_registered_with_their_facts():
    assert CARDS["cce"].label == "CCE" and CARDS["liger_ce"].label == "Liger CE"
    names = [cls.name for cls in ordered_losses()]
    assert names.index("ce") < names.index("ce_chunked") < names.index("cce") < names.index("liger_ce")
    assert names.index("liger_ce") < names.index("rece")  # the exact CEs together, before the approximations
    ce_ladder = [c.label() for c in ladder_for("ce").candidates()]
    for name in KERNEL_LOSSES:
        assert [c.label() for c in ladder_for(name).candidates()] == ce_ladder  # batch size only
        assert CARDS[name].paper_results == CARDS["ce"].paper_results  # the same loss as CE
        assert LOSSES[name].description


def test_build_loss_takes_the_libraries_parameters_and_refuses_bad_ones():
    cce = build_loss("cce", num_items=300, filter_eps=2.44e-4, impl="torch_compile")
    assert (cce.filter_eps, cce.impl) == (2.44e-4, "torch_compile")
    assert build_loss("cce", num_items=300).filter_eps is None  # exact gradients by default
    assert build_loss("liger_ce", num_items=300, chunk_mem_const=64).chunk_mem_const == 64
    with pytest.raises(UserError, match="filter_eps must lie in"):
        build_loss("cce", num_items=300, filter_eps=-1.0)
    with pytest.raises(UserError, match="impl must be one of 'cce', 'torch_compile'"):
        build_loss("cce", num_items=300, impl="triton")
    with pytest.raises(UserError, match="chunk_mem_const must be >= 1, got 0"):
        build_loss("liger_ce", num_items=300, chunk_mem_const=0)


def test_liger_chunks_as_the_library_sizes_them():
    # GPU.md's shape: D 64, C 173,511, N 8,192 -> 4-position chunks by default (2,048 of them)
    assert build_loss("liger_ce", num_items=173_511).chunk_positions(8192, 64) == 4
    assert build_loss("liger_ce", num_items=173_511, chunk_mem_const=64).chunk_positions(8192, 64) == 256
    assert build_loss("liger_ce", num_items=300, chunk_mem_const=8).chunk_positions(64, 16) == 32
    assert build_loss("liger_ce", num_items=10).chunk_positions(64, 16) == 64  # one chunk: never more than N


# ---------------------------------------------------------------- availability


def test_other_losses_run_everywhere():
    for name in ("ce", "ce_chunked", "rece", "sce"):
        assert LOSSES[name].unavailable_reason("cpu", "fp32") is None


def test_a_missing_library_names_the_extra(monkeypatch, gpu_here):
    monkeypatch.setattr(triton_libs, "installed", lambda module: module not in {"cut_cross_entropy", "liger_kernel"})
    for name, package in (("cce", "cut-cross-entropy"), ("liger_ce", "liger-kernel")):
        reason = LOSSES[name].unavailable_reason("cuda", "bf16")
        assert reason == f"needs {package}, not installed: pip install 'rece-bench[kernels]'"
    monkeypatch.setattr(triton_libs, "installed", lambda module: module != "triton")
    assert LOSSES["liger_ce"].unavailable_reason("cuda", "bf16").startswith("needs triton, not installed")


def test_the_cpu_needs_a_gpu_or_for_liger_the_interpreter(monkeypatch, no_interpreter):
    for name in KERNEL_LOSSES:
        assert "pass --device cuda" in LOSSES[name].unavailable_reason("cpu", "bf16")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert LOSSES["liger_ce"].unavailable_reason("cpu", "fp32") is None
    assert "pass --device cuda" in LOSSES["cce"].unavailable_reason("cpu", "bf16")  # its kernels fail interpreted


def test_cuda_without_a_gpu_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in KERNEL_LOSSES:
        assert "this machine has none" in LOSSES[name].unavailable_reason("cuda:0", "bf16")


def test_on_a_gpu_cce_needs_bf16_or_fp16_and_liger_takes_any(gpu_here):
    assert LOSSES["cce"].unavailable_reason("cuda", "fp32").endswith("pass --precision bf16")
    assert LOSSES["cce"].unavailable_reason("cuda:0", "bf16") is None
    assert LOSSES["cce"].unavailable_reason("cuda", "fp16") is None
    for precision in ("fp32", "bf16", "fp16"):
        assert LOSSES["liger_ce"].unavailable_reason("cuda", precision) is None


def test_check_available_is_a_user_error_naming_the_fix(gpu_here):
    with pytest.raises(UserError, match="loss 'cce' cannot run on cuda at fp32 here: .*pass --precision bf16$"):
        check_available("cce", "cuda", "fp32")
    check_available("cce", "cuda", "bf16")
    check_available("ce", "cpu", "fp32")


def test_called_where_it_cannot_run_the_loss_says_why_not_the_library(no_interpreter):
    hidden, item_emb = torch.randn(8, 4, requires_grad=True), torch.randn(30, 4, requires_grad=True)
    targets = torch.arange(8)
    for name in KERNEL_LOSSES:
        with pytest.raises(UserError, match=f"loss '{name}' cannot run on cpu.*pass --device cuda"):
            build_loss(name, num_items=30)(hidden, item_emb, targets)


# ---------------------------------------------------------------- the command line


def _one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = result.output.strip()
    assert text.startswith("error:") and len(text.splitlines()) == 1, text
    for needle in needles:
        assert needle in text


def _files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


def test_losses_lists_them_with_the_reason_for_this_machine(monkeypatch, no_interpreter):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    listed = runner.invoke(app, ["losses"], env={"COLUMNS": "400"})
    assert listed.exit_code == 0, listed.output
    lines = {line.split("│")[1].strip(): line for line in listed.output.splitlines() if line.startswith("│ ")}
    for name in KERNEL_LOSSES:
        assert name in lines  # listed, whatever the machine
    assert listed.output.count("Unavailable here: its Triton kernels run on a CUDA GPU, not on cpu") == 2
    monkeypatch.setattr(triton_libs, "installed", lambda module: module != "cut_cross_entropy")
    listed = runner.invoke(app, ["losses"], env={"COLUMNS": "400"})
    assert "Unavailable here: needs cut-cross-entropy, not installed: pip install 'rece-bench[kernels]'" in (
        listed.output
    )


def test_losses_on_a_gpu_says_cce_needs_half_precision(gpu_here):
    listed = runner.invoke(app, ["losses"], env={"COLUMNS": "400"})
    assert listed.exit_code == 0, listed.output
    assert "Not at fp32: cut-cross-entropy 25.1.1 has no fp32 backward" in listed.output
    assert "Unavailable here" not in listed.output


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--dataset", "tiny", "--loss", "cce", "--epochs", "1", "--max-len", "12", "--dim", "16"],
        ["run", "--dataset", "tiny", "--loss", "liger_ce", "--budget", "1GB", "--epochs", "1", "--max-len", "12"],
        ["sweep", "--dataset", "tiny", "--loss", "ce", "--loss", "liger_ce", "--epochs", "1", "--max-len", "12"],
        ["sweep", "--dataset", "tiny", "--loss", "cce", "--budget", "1GB", "--epochs", "1", "--max-len", "12"],
        ["bench-step", "--dataset", "tiny", "--config", "ce", "--config", "cce", "--max-len", "12", "--steps", "1"],
        ["bench-loss", "--items", "60", "--positions", "30", "--dim", "8", "--loss", "ce", "--loss", "liger_ce"],
    ],
    ids=["run", "run-budget", "sweep", "sweep-budget", "bench-step", "bench-loss"],
)
def test_asking_for_one_where_it_cannot_run_is_one_line_and_writes_nothing(
    args, tmp_path, tiny_data_root, no_interpreter
):
    results = tmp_path / "results"
    data = [] if args[0] == "bench-loss" else ["--data-dir", str(tiny_data_root)]
    result = runner.invoke(app, [*args, *data, "--results-dir", str(results)])
    _one_line_error(result, "cannot run on cpu at fp32 here", "pass --device cuda")
    assert _files_under(results) == []


def test_bench_loss_over_every_loss_skips_them_with_the_reason(tmp_path, monkeypatch, no_interpreter):
    import rece_bench.bench.loss as bench_loss

    every = bench_loss.all_losses()
    assert set(every) == set(LOSSES)  # the default: every registered loss, these two included
    monkeypatch.setattr(bench_loss, "all_losses", lambda: ("ce", *KERNEL_LOSSES))  # the others: tests of their own
    args = ["bench-loss", "--items", "60", "--positions", "30", "--dim", "8", "--repeats", "1",
            "--results-dir", str(tmp_path)]  # fmt: skip
    result = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    (path,) = (tmp_path / "bench-loss").glob("*.json")
    rows = {row["loss"]: row for row in json.loads(path.read_text())["rows"]}
    assert set(rows) == {"ce", *KERNEL_LOSSES}
    for name in KERNEL_LOSSES:
        assert rows[name]["status"] == "skipped" and rows[name]["peak_bytes"] is None
        assert rows[name]["note"].startswith("unavailable: its Triton kernels run on a CUDA GPU")
    assert rows["ce"]["status"] == "ok"
    assert "unavailable: its Triton kernels" in result.output  # shown, not only saved


# ---------------------------------------------------------------- the report


def _row(loss: str, ndcg: float, peak: int) -> dict:
    return {
        "run_id": loss, "dataset": "gowalla", "loss": loss, "status": "ok", "params": {"batch_size": 64}, "seed": 1,
        "budget_bytes": None, "peak_bytes": peak, "train_time_s": 1.0 + ndcg, "ndcg@1": ndcg, "ndcg@5": ndcg,
        "ndcg@10": ndcg, "hr@5": ndcg, "hr@10": ndcg, "valid_ndcg@10": ndcg,
    }  # fmt: skip


def test_the_report_orders_them_beside_ce_with_the_papers_ce_numbers():
    from rece_bench.report.tables import report_sections, results_frame

    rows = [_row("rece", 0.05, 10**8), _row("liger_ce", 0.04, 2 * 10**8), _row("ce", 0.039, 10**9),
            _row("cce", 0.041, 3 * 10**8), _row("ce_chunked", 0.038, 4 * 10**8)]  # fmt: skip
    table2 = report_sections(results_frame(rows))[0]
    assert [r[0].text for r in table2.rows] == ["ce", "ce_chunked", "cce", "liger_ce", "rece"]
    cce = table2.rows[2]
    assert cce[3].text == "0.0410" and cce[3].paper == "0.0388"  # NDCG@10 beside the paper's CE on Gowalla


def test_the_plot_draws_them_as_their_own_lines():
    from rece_bench.report.plot import fronts_figure
    from rece_bench.report.tables import configurations, pareto_fronts, results_frame

    rows = [_row("ce", 0.039, 10**9), _row("cce", 0.041, 3 * 10**8), _row("liger_ce", 0.04, 2 * 10**8)]
    figure = fronts_figure(pareto_fronts(configurations(results_frame(rows))))
    lines = {line.get_label(): line.get_color() for line in figure.axes[0].get_lines()}
    assert {"ce", "cce", "liger_ce"} <= set(lines)
    assert len({lines["ce"], lines["cce"], lines["liger_ce"]}) == 3  # one colour each


# ---------------------------------------------------------------- the kernels, interpreted on the CPU

INTERPRETED = textwrap.dedent(
    """
    import json, sys
    import torch
    from rece_bench.losses import build_loss

    def dense(hidden, item_emb, targets):  # float64 reference: value and both gradients
        h = hidden.detach().double().requires_grad_()
        e = item_emb.detach().double().requires_grad_()
        value = torch.nn.functional.cross_entropy(h @ e.T, targets)  # (N, D) x (D, C) -> (N, C)
        value.backward()
        return value, h.grad, e.grad

    def case(name, n, c, d, dtype, **params):
        gen = torch.Generator().manual_seed(n + c + d)
        hidden = torch.randn(n, d, generator=gen).to(dtype).requires_grad_()
        item_emb = (torch.randn(c, d, generator=gen) * 2 / d**0.5).to(dtype).requires_grad_()
        targets = torch.randint(0, c, (n,), generator=gen)
        value = build_loss(name, num_items=c, **params)(hidden, item_emb, targets)
        value.backward()
        ref, ref_h, ref_e = dense(hidden, item_emb, targets)
        err = lambda got, want: float((got.double() - want).abs().max() / want.abs().max())
        return {"value_dtype": str(value.dtype), "grad_dtypes": [str(hidden.grad.dtype), str(item_emb.grad.dtype)],
                "value": abs(float(value) - float(ref)) / float(ref), "hidden": err(hidden.grad, ref_h),
                "items": err(item_emb.grad, ref_e)}

    out = {}
    for d, k in ((16, 1), (16, 8), (64, 1)):  # 16 chunks of 4 positions, 2 of 32, 4 of 16
        out[f"liger fp32 d{d} k{k}"] = case("liger_ce", 64, 300, d, torch.float32, chunk_mem_const=k)
    out["liger bf16 d32 k1"] = case("liger_ce", 64, 300, 32, torch.bfloat16)
    try:
        from cut_cross_entropy import linear_cross_entropy
        h, e = torch.randn(64, 16, dtype=torch.bfloat16), torch.randn(300, 16, dtype=torch.bfloat16)
        linear_cross_entropy(h, e, torch.randint(0, 300, (64,)), filter_eps=None, impl="cce")
        out["cce"] = "ran"
    except Exception as exc:
        out["cce"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def interpreted():
    """The cases above, run once in a subprocess with Triton's interpreter on."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", INTERPRETED], env=env, capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_liger_under_the_interpreter_matches_float64_ce(interpreted):
    fp32 = {key: value for key, value in interpreted.items() if key.startswith("liger fp32")}
    assert len(fp32) == 3
    for key, errors in fp32.items():
        assert errors["value_dtype"] == "torch.float32" and errors["grad_dtypes"] == ["torch.float32"] * 2, key
        assert errors["value"] < 1e-6 and errors["hidden"] < 1e-5 and errors["items"] < 1e-5, (key, errors)


def test_liger_in_bf16_keeps_bf16_gradients_within_bf16_rounding(interpreted):
    errors = interpreted["liger bf16 d32 k1"]
    assert errors["value_dtype"] == "torch.float32"
    assert errors["grad_dtypes"] == ["torch.bfloat16", "torch.bfloat16"]
    eps = torch.finfo(torch.bfloat16).eps  # 2^-7: the reference is exact on the same bf16 inputs
    assert errors["value"] < eps / 4 and errors["hidden"] < 2 * eps and errors["items"] < 2 * eps, errors


def test_cce_kernels_still_fail_under_the_interpreter(interpreted):
    assert interpreted["cce"] != "ran", (
        "CCE's kernels now run under TRITON_INTERPRET=1: set interpreter_works=True in losses/cce.py and check "
        "their values here as Liger's are"
    )
    assert interpreted["cce"].startswith("InterpreterError"), interpreted["cce"]
    assert "NoneType" in interpreted["cce"] and "object has no attribute" in interpreted["cce"], interpreted["cce"]
