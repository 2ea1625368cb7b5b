"""The device paths, written once and run on every device present: cpu always, cuda where there is one.

Every registered loss on the device against itself on CPU in float64, under autocast, the memory measurement, the
budget's probe and cap, bench-loss, bench-step and a short run. CI imports and collects this module on a CPU
machine, so a renamed name fails there, and runs the cpu cases; the cuda cases carry the ``cuda`` marker (``pytest
-m cuda`` selects them; ``benchmarks/gpu_check.sh`` runs them) and are skipped without a GPU, unless
``RECE_BENCH_CUDA_TESTS=1`` says one is expected: then they fail. A few CUDA-only tests (the allocator cap, NVML,
CUDA against the CPU's live-tensor peak) carry the marker alone.

Losses are taken from the registry, so a new loss is covered without editing this file, and built with what they
ask of the data (``data_inputs``: ce_logq's item counts). Losses that draw random numbers (negatives,
projections) cannot share a seed across devices (CUDA's generator is not CPU's), so the device run records every
draw and the CPU float64 run replays them (``_Draws``): both then see the same negatives or projections, and any
remaining difference is the device's code path itself. The cpu cases are kept small (the suite runs on 2 cores).
"""

from __future__ import annotations

import inspect
import os

import pytest
import torch
import torch.nn.functional as F

from rece_bench.budget.probe import measure_peak
from rece_bench.device import compute_for
from rece_bench.losses import LOSSES, LossBatch, build_loss
from rece_bench.losses.base import lookup
from rece_bench.memory import CPU_METHOD, CUDA_METHOD, PeakMemory
from rece_bench.training.driver import load_run_data, train_run

MIB = 1 << 20
CPU = torch.device("cpu")

# Small values for parameters a tiny catalogue cannot take at their defaults (n_negatives 256 > C), and settings
# that make RECE do real bucketing with several rounds. Parameters not named here keep their defaults.
SMALL_PARAMS = {"n_negatives": 5, "n_buckets": 4, "n_extra_chunks": 1, "rounds": 3}
TINY_BLOCK = {"block_mib": 1e-3}  # many blocks or groups: the streamed paths
STREAMING = sorted(name for name in LOSSES if "block_mib" in {spec.name for spec in LOSSES[name].params})
# Losses whose own code cannot run on a CPU (another project's GPU kernels: cce, liger_ce; ``Loss.unavailable_reason``)
# are checked against the CPU float64 run of the loss they compute exactly; one missing here fails, never skips.
CPU_STAND_INS = {"cce": "ce", "liger_ce": "ce"}


def _cpu_twin(name: str) -> str:
    """The loss whose CPU float64 run is ``name``'s reference: itself, or its stand-in when it cannot run on a CPU."""
    if LOSSES[name].unavailable_reason("cpu", "fp32") is None:
        return name
    assert name in CPU_STAND_INS, f"{name} cannot run on the CPU: name the loss it equals in CPU_STAND_INS"
    return CPU_STAND_INS[name]


def _runs_or_skip(name: str, device: torch.device, precision: str = "fp32") -> None:
    """Skip a loss that cannot run on ``device`` at ``precision`` here, with its reason (cce, liger_ce on a CPU)."""
    reason = LOSSES[name].unavailable_reason(device, precision)
    if reason is not None:
        pytest.skip(f"{name}: {reason}")


def _cuda_or_skip() -> None:
    """Skip without CUDA, or fail when RECE_BENCH_CUDA_TESTS=1 says a GPU is expected here."""
    if torch.cuda.is_available():
        return
    why = f"torch {torch.__version__} sees no CUDA device"
    if os.environ.get("RECE_BENCH_CUDA_TESTS") == "1":
        pytest.fail(f"RECE_BENCH_CUDA_TESTS=1 expects a GPU, but {why}")
    pytest.skip(f"{why}: CUDA tests skipped")


DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=pytest.mark.cuda)]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Every device present: the cpu always, the current CUDA device (indexed) where there is one."""
    if request.param == "cuda":
        _cuda_or_skip()
    return compute_for(request.param).device


@pytest.fixture
def cuda() -> torch.device:
    _cuda_or_skip()
    return compute_for("cuda").device


def _synchronize(device: torch.device) -> None:
    compute_for(device).synchronize()


# ---------------------------------------------------------------- recording and replaying random draws

_FUNCTIONS = ("rand", "randn", "randint", "randperm", "normal", "multinomial", "bernoulli", "poisson",
              "rand_like", "randn_like", "randint_like")  # fmt: skip
_METHODS = ("uniform_", "normal_", "random_", "exponential_", "bernoulli_", "geometric_", "cauchy_", "log_normal_")


class _Draws:
    """Patches torch's random functions: ``record`` keeps every draw, ``replay`` returns the recorded ones in order,
    cast to the dtype and device of the call (the call itself still runs, so shapes and dtypes are the caller's)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch, self.draws, self.mode, self.cursor = monkeypatch, [], "off", 0
        for name in _FUNCTIONS:
            if hasattr(torch, name):
                monkeypatch.setattr(torch, name, self._wrap_function(getattr(torch, name), name))
        for name in _METHODS:
            monkeypatch.setattr(torch.Tensor, name, self._wrap_method(getattr(torch.Tensor, name), name))

    def _take(self, out: torch.Tensor, name: str) -> torch.Tensor:
        if self.mode == "record":
            self.draws.append((name, out.detach().clone()))
        elif self.mode == "replay":
            assert self.cursor < len(self.draws), f"the CPU run drew more often than the CUDA run ({name})"
            want_name, value = self.draws[self.cursor]
            assert (want_name, tuple(value.shape)) == (name, tuple(out.shape)), (
                f"draw {self.cursor}: CUDA drew {want_name}{tuple(value.shape)}, CPU {name}{tuple(out.shape)}"
            )
            self.cursor += 1
            with torch.no_grad():
                out.copy_(value.to(device=out.device, dtype=out.dtype))
        return out

    def _wrap_function(self, original, name):
        def wrapped(*args, **kwargs):
            return self._take(original(*args, **kwargs), name)

        return wrapped

    def _wrap_method(self, original, name):
        def wrapped(tensor, *args, **kwargs):
            original(tensor, *args, **kwargs)
            return self._take(tensor, name)

        return wrapped

    def replayed_all(self) -> bool:
        return self.cursor == len(self.draws)


# ---------------------------------------------------------------- problems


def _params_for(name: str, extra: dict | None = None) -> dict:
    names = {spec.name for spec in lookup(name).params}
    params = {key: value for key, value in SMALL_PARAMS.items() if key in names}
    params.update({key: value for key, value in (extra or {}).items() if key in names})
    return params


def _build(name: str, num_items: int, device: torch.device, params: dict | None = None) -> torch.nn.Module:
    """The loss on ``device``, seeded where it draws, with what it asks of the data (Zipf-like item counts)."""
    cls = lookup(name)
    args = dict(_params_for(name) if params is None else params)
    if any(spec.name == "generator" for spec in cls.params):
        args["generator"] = torch.Generator(device).manual_seed(0)
    if "item_counts" in cls.data_inputs:
        args["item_counts"] = (1_000 // torch.arange(1, num_items + 1, device=device)).clamp(min=1)  # (C,)
    return build_loss(name, num_items=num_items, **args).to(device)


def _problem(n_positions: int = 64, num_items: int = 97, dim: int = 8, seq_len: int = 8, seed: int = 0):
    """float64 CPU hidden (N, D), item_emb (C, D), targets (N,) and the samplers' batch (users have seen their
    targets and one repeat)."""
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n_positions, dim, generator=gen, dtype=torch.float64)
    item_emb = torch.randn(num_items, dim, generator=gen, dtype=torch.float64) * 0.7
    targets = torch.randint(0, num_items, (n_positions,), generator=gen)
    seq_index = torch.arange(n_positions) // seq_len  # (N,)
    n_seqs = int(seq_index[-1]) + 1
    seen = torch.full((n_seqs, seq_len + 1), -1, dtype=torch.long)  # (B, S)
    for t in range(n_positions):
        seen[seq_index[t], t % seq_len] = targets[t]
    seen[:, -1] = seen[:, 0]
    return hidden, item_emb, targets, LossBatch(seq_index, seen)


def _value_and_grads(loss, hidden, item_emb, targets, batch, device, dtype, precision: str = "fp32"):
    """Value and gradients, as float64 on the CPU; the loss runs under ``precision``'s autocast on ``device``."""
    h = hidden.to(device=device, dtype=dtype).requires_grad_()
    e = item_emb.to(device=device, dtype=dtype).requires_grad_()
    moved = LossBatch(batch.seq_index.to(device), batch.seen_items.to(device))
    with compute_for(device, precision).autocast():
        value = loss(h, e, targets.to(device), moved)
    grad_h, grad_e = torch.autograd.grad(value, (h, e))
    assert grad_h.dtype == dtype and grad_e.dtype == dtype, (grad_h.dtype, grad_e.dtype)  # the inputs' dtype
    return [t.detach().to("cpu", torch.float64) for t in (value, grad_h, grad_e)]


def _assert_close(got, want, tol: float, what: str) -> None:
    for part, a, b in zip(("value", "grad hidden", "grad item_emb"), got, want, strict=True):
        assert torch.isfinite(a).all(), f"{what}: {part} is not finite"
        torch.testing.assert_close(a, b, atol=tol, rtol=tol, msg=lambda m, p=part: f"{what}: {p}: {m}")


def _against_cpu_float64(name, params, device, dtype, monkeypatch, precision="fp32", **sizes):
    """The loss on ``device`` in ``dtype`` (and ``precision``), its draws recorded, and on the CPU in float64 with
    them replayed: value and gradients."""
    _runs_or_skip(name, device, precision)
    hidden, item_emb, targets, batch = _problem(**sizes)
    if dtype == torch.float32:  # the CPU reference sees the same rounded inputs: only arithmetic differs
        hidden, item_emb = hidden.float().double(), item_emb.float().double()
    num_items = item_emb.shape[0]
    draws = _Draws(monkeypatch)
    draws.mode = "record"
    got = _value_and_grads(_build(name, num_items, device, params), hidden, item_emb, targets, batch, device, dtype,
                           precision)  # fmt: skip
    _synchronize(device)
    draws.mode = "replay"
    twin = _cpu_twin(name)
    reference = _build(twin, num_items, CPU, params if twin == name else None)
    want = _value_and_grads(reference, hidden, item_emb, targets, batch, CPU, torch.float64)
    draws.mode = "off"
    assert draws.replayed_all(), f"{name}: the {device} run drew {len(draws.draws)} times, the CPU run {draws.cursor}"
    return got, want


# ---------------------------------------------------------------- the losses


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_on_the_device_matches_itself_on_cpu_in_float64(name, dtype, device, monkeypatch):
    if dtype == torch.float64 and name in CPU_STAND_INS:
        pytest.skip(f"{name}: its Triton kernels compute in float32 at most; float32 inputs test it")
    got, want = _against_cpu_float64(name, _params_for(name), device, dtype, monkeypatch)
    tol = 1e-9 if dtype == torch.float64 else 2e-4
    _assert_close(got, want, tol, f"{name} {dtype} on {device} vs CPU float64")


@pytest.mark.parametrize("name", STREAMING)
def test_streamed_blocks_on_the_device_match_cpu(name, device, monkeypatch):
    """Tiny working blocks: many item blocks (ce_chunked) or chunk groups (rece), on a larger catalogue."""
    sizes = {"n_positions": 300, "num_items": 2_001, "dim": 16, "seq_len": 50}
    got, want = _against_cpu_float64(name, _params_for(name, TINY_BLOCK), device, torch.float32, monkeypatch, **sizes)
    _assert_close(got, want, 2e-4, f"{name} in tiny blocks on {device} vs CPU float64")


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_runs_under_bf16_autocast_with_float32_weights(name, device, monkeypatch):
    """Mixed precision as `run --precision bf16` trains: float32 parameters, autocast on. On CUDA this is where
    ce_chunked, rece and sce raised dtype errors (shared/reference/GPU.md); the gradients must come back float32.
    bf16 keeps 8 bits of mantissa (relative rounding 2^-9 per value): over a handful of roundings the loss stays
    within 2% of the float64 value with the same draws, and each gradient within 5% of its largest entry."""
    got, want = _against_cpu_float64(name, _params_for(name), device, torch.float32, monkeypatch, precision="bf16")
    what = f"{name} under bf16 autocast on {device}"
    for part, a, b in zip(("value", "grad hidden", "grad item_emb"), got, want, strict=True):
        assert torch.isfinite(a).all(), f"{what}: {part} is not finite"
        scale = float(b.abs().max())
        tol = 2e-2 * scale if part == "value" else 5e-2 * scale
        torch.testing.assert_close(a, b, atol=tol, rtol=0, msg=lambda m, p=part: f"{what}: {p}: {m}")


def _dense_ce(hidden, item_emb, targets):
    return F.cross_entropy(hidden @ item_emb.T, targets)  # (N, C) logits


@pytest.mark.parametrize(
    ("name", "params"),
    [("ce", {}), ("ce_chunked", {}), ("ce_chunked", TINY_BLOCK), ("rece", {"n_buckets": 1, "rounds": 2}),
     ("rece", {"n_buckets": 4, "n_extra_chunks": 3, "rounds": 3})],
)  # fmt: skip
def test_exact_losses_on_the_device_equal_dense_ce(name, params, device):
    """Full CE, its chunked twin, and RECE where every chunk sees the catalogue (one bucket, or n_ec >= n_c - 1)."""
    hidden, item_emb, targets, batch = _problem()
    loss = _build(name, item_emb.shape[0], device, params)
    got = _value_and_grads(loss, hidden, item_emb, targets, batch, device, torch.float64)
    h, e = hidden.clone().requires_grad_(), item_emb.clone().requires_grad_()
    value = _dense_ce(h, e, targets)
    want = [value.detach(), *torch.autograd.grad(value, (h, e))]
    _assert_close(got, want, 1e-9, f"{name} {params} on {device} vs dense CE")


@pytest.mark.parametrize(("name", "dtype"), [("cce", torch.bfloat16), ("liger_ce", torch.bfloat16),
                                              ("liger_ce", torch.float32)])  # fmt: skip
def test_the_fused_ce_kernels_of_other_projects_equal_dense_ce(name, dtype, device):
    """cce and liger_ce on inputs made in ``dtype`` against dense CE in float64 on the same rounded inputs: exact CE
    (cce's gradient filter off by default), gradients back in ``dtype``, the value in float32. In bf16 the error is
    the rounding of the gradients to bf16: within two bf16 epsilons of the largest entry."""
    _runs_or_skip(name, device, "bf16" if dtype == torch.bfloat16 else "fp32")
    hidden, item_emb, targets, batch = _problem(n_positions=256, num_items=3_001, dim=64)
    hidden, item_emb = hidden.to(dtype).double(), item_emb.to(dtype).double()
    got = _value_and_grads(_build(name, item_emb.shape[0], device), hidden, item_emb, targets, batch, device, dtype)
    h, e = hidden.clone().requires_grad_(), item_emb.clone().requires_grad_()
    value = _dense_ce(h, e, targets)
    want = [value.detach(), *torch.autograd.grad(value, (h, e))]
    eps = 2e-4 if dtype == torch.float32 else 2 * torch.finfo(torch.bfloat16).eps
    for part, a, b in zip(("value", "grad hidden", "grad item_emb"), got, want, strict=True):
        assert torch.isfinite(a).all(), f"{name} {dtype}: {part} is not finite"
        err = float((a - b).abs().max() / b.abs().max())
        assert err < (eps / 4 if part == "value" else eps), (name, dtype, part, err)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_seeded_generator_repeats_and_large_logits_stay_finite(name, device):
    """A generator on the device with the same seed gives the same value; float32 logits around +-80 stay finite."""
    _runs_or_skip(name, device)
    hidden, item_emb, targets, batch = _problem()
    hidden = hidden * 12.0
    values = []
    for _ in range(2):
        loss = _build(name, item_emb.shape[0], device)
        values.append(_value_and_grads(loss, hidden, item_emb, targets, batch, device, torch.float32))
    for part in values[0]:
        assert torch.isfinite(part).all(), name
    for a, b in zip(*values, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_signature_of_loss_forward_is_the_shared_one():
    """Guards the registry-driven tests above: every loss takes (hidden, item_emb, targets, batch)."""
    for name, cls in LOSSES.items():
        names = list(inspect.signature(cls.forward).parameters)[1:5]
        assert names == ["hidden", "item_emb", "targets", "batch"], name


# ---------------------------------------------------------------- memory measurement


def test_the_peak_is_what_the_window_allocates_after_a_reset(device):
    """The allocator's peak after a reset on CUDA, live tensor bytes on CPU: a scratch tensor inside the window is
    seen, what was live at its start is its start, and an earlier or a previous window's peak is not. (Sizes in
    units of 4 MiB on CPU, 16 MiB on CUDA: the CPU's tracker pays for every byte it sees.)"""
    unit = (16 if device.type == "cuda" else 4) * MIB
    keep = torch.empty(unit // 2, dtype=torch.uint8, device=device)  # live at the window's start
    big = torch.empty(8 * unit, dtype=torch.uint8, device=device)
    del big  # an earlier peak the window must not see
    with PeakMemory(device, track=(keep,)) as meter:
        scratch = torch.empty(4 * unit, dtype=torch.uint8, device=device)
        del scratch
    stats = meter.stats
    assert stats.method == (CUDA_METHOD if device.type == "cuda" else CPU_METHOD)
    assert stats.start_bytes >= unit // 2 and stats.device == str(device)
    assert 4 * unit <= stats.peak_delta_bytes <= 4 * unit + 2 * MIB, stats  # not the 8 units before the window
    with PeakMemory(device, track=(keep,)) as second:
        small = torch.empty(unit // 4, dtype=torch.uint8, device=device)
        del small
    assert unit // 4 <= second.stats.peak_delta_bytes < 4 * unit, "the peak was not reset between windows"
    del keep


@pytest.mark.cuda
def test_nvml_reads_the_gpu_torch_uses_and_counts_at_least_the_allocator_peak(cuda):
    compute = compute_for(cuda)
    keep = torch.empty(64 * MIB, dtype=torch.uint8, device=cuda)
    with PeakMemory(compute) as meter:
        scratch = torch.empty(64 * MIB, dtype=torch.uint8, device=cuda)
        del scratch
    nvml = compute.nvml_used_bytes()
    if nvml is None:
        pytest.skip("NVML (pynvml) is not available here")
    assert meter.stats.device_peak_bytes is not None
    assert nvml >= meter.stats.peak_bytes, (nvml, meter.stats)  # the context and the cached blocks too
    del keep


def test_bench_loss_on_the_device_counts_inputs_and_their_gradients(device):
    from rece_bench.bench.loss import BenchLossConfig, run_bench_loss

    items, positions = (5_000, 512) if device.type == "cuda" else (500, 64)
    params = tuple((name, key, value) for name in sorted(LOSSES) for key, value in _params_for(name).items())
    config = BenchLossConfig(items=(items,), positions=positions, dim=32, losses=tuple(sorted(LOSSES)), repeats=2,
                             device=str(device), params=params)  # fmt: skip
    rows = run_bench_loss(config, results_root=None).rows
    inputs = 2 * (positions + items) * 32 * 4
    for row in rows:
        if LOSSES[row.loss].unavailable_reason(device, "fp32") is not None:  # cce, liger_ce where they cannot run
            assert row.status == "skipped" and row.note.startswith("unavailable: "), row
            continue
        assert row.status == "ok", row
        assert row.memory_method == (CUDA_METHOD if device.type == "cuda" else CPU_METHOD)
        assert row.peak_bytes >= inputs and row.median_time_s > 0, row
    ce = next(r for r in rows if r.loss == "ce")
    assert ce.peak_beyond_inputs_bytes >= positions * items * 4  # the (N, C) logits


# ---------------------------------------------------------------- the budget's probe and cap


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_probe_measures_a_step_on_the_device(precision, device, tiny_data_root, tiny_config):
    config = tiny_config(loss="rece", device=str(device), precision=precision,
                         loss_params={"n_extra_chunks": 1, "rounds": 2})  # fmt: skip
    data = load_run_data(tiny_data_root, config.dataset, config.max_len)
    peak = measure_peak(config, data, steps=2, budget_bytes=256 * MIB)
    assert peak is not None and peak > 0


@pytest.mark.cuda
def test_the_cap_refuses_an_allocation_above_the_budget_and_the_probe_lifts_it(cuda, tiny_data_root, tiny_config):
    compute = compute_for("cuda")  # 'cuda' without an index: the cap crashed on it
    assert compute.device == cuda and compute.device.index is not None
    assert compute.free_bytes() > 512 * MIB
    try:
        compute.cap_memory(256 * MIB)
        compute.empty_cache()
        small = torch.empty(64 * MIB, dtype=torch.uint8, device=cuda)
        del small
        with pytest.raises(torch.OutOfMemoryError):
            torch.empty(512 * MIB, dtype=torch.uint8, device=cuda)
        # A probe after a capped run must measure, not fail: measure_peak lifts the cap first.
        config = tiny_config(loss="rece", device="cuda", loss_params={"n_extra_chunks": 1, "rounds": 2})
        data = load_run_data(tiny_data_root, config.dataset, config.max_len)
        peak = measure_peak(config, data, steps=2)
        assert peak is not None and peak > 0
        big = torch.empty(512 * MIB, dtype=torch.uint8, device=cuda)  # the cap is gone
        del big
    finally:
        compute.cap_memory(None)
        compute.empty_cache()


@pytest.mark.cuda
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_probe_on_cuda_is_close_to_the_cpu_live_tensor_peak(loss, cuda, tiny_data_root, tiny_config):
    """The two devices measure the same tensors. The allocator rounds blocks up and cuBLAS takes its workspace (tens
    of MiB) inside the window, so allow a factor and a constant; a peak off by more means a method misses something.
    The same working block on both (the CPU's) so that both stream alike."""
    _runs_or_skip(loss, CPU)  # the same code on both devices, or nothing to compare
    _runs_or_skip(loss, cuda)
    params = {**_params_for(loss), **({"block_mib": 32.0} if loss in STREAMING else {})}
    cpu = tiny_config(loss=loss, loss_params=params)
    data = load_run_data(tiny_data_root, cpu.dataset, cpu.max_len)
    cpu_peak = measure_peak(cpu, data, steps=2)
    cuda_peak = measure_peak(tiny_config(loss=loss, loss_params=params, device="cuda"), data, steps=2)
    assert cpu_peak and cuda_peak
    assert 0.5 * cpu_peak <= cuda_peak <= 2 * cpu_peak + 128 * MIB, (loss, cpu_peak, cuda_peak)


# ---------------------------------------------------------------- whole runs


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_short_run_on_the_device_ends_ok_with_its_precision_and_peak(precision, device, tiny_data_root,
                                                                       tiny_config, tmp_path):  # fmt: skip
    config = tiny_config(loss="rece", device=str(device), epochs=2 if device.type == "cuda" else 1, precision=precision,
                         loss_params={"n_extra_chunks": 1, "rounds": 2})  # fmt: skip
    result = train_run(config, tiny_data_root, tmp_path)
    assert result.status == "ok", result.message
    assert result.device == str(device) and result.precision == precision
    assert result.memory_method == (CUDA_METHOD if device.type == "cuda" else CPU_METHOD)
    assert result.peak_bytes >= result.start_bytes > 0
    assert 0.0 <= result.metrics["ndcg@10"] <= 1.0


def test_bench_step_on_the_device_measures_every_loss(device, tiny_data_root):
    from rece_bench.bench.step import StepBenchConfig, run_step_benchmark

    runnable = sorted(name for name in LOSSES if LOSSES[name].unavailable_reason(device, "fp32") is None)
    assert {"ce", "rece", "sce"} <= set(runnable)
    configs = tuple((name, _params_for(name)) for name in runnable)
    bench = StepBenchConfig(dataset="tiny", data_root=tiny_data_root, configs=configs, batch_size=16, max_len=12,
                            dim=16, steps=2, warmup=1, device=str(device))  # fmt: skip
    rows = run_step_benchmark(bench)
    assert [r.loss for r in rows] == [c[0] for c in configs]
    for row in rows:
        assert row.device == str(device) and row.peak_bytes > 0 and row.step_time_s > 0, row
