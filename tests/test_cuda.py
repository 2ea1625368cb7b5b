"""The CUDA paths: every registered loss against itself on CPU in float64, the budget probe's cap, the CUDA memory
measurement (allocator peak after a reset, NVML beside it), and a whole run on CUDA.

Skipped as a whole, before torch is imported, on a machine without an NVIDIA device node (``/dev/nvidia*``); then
skipped again if torch has no CUDA. Select them with ``pytest -m cuda``; ``benchmarks/gpu_check.sh`` runs them.

Losses are taken from the registry, so a new loss is covered without editing this file. Losses that draw random
numbers (negatives, projections) cannot share a seed across devices (CUDA's generator is not CPU's), so the CUDA
run records every draw and the CPU float64 run replays them (``_Draws``): both then see the same negatives or
projections, and any remaining difference is the CUDA code path itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.cuda


def _has_nvidia_device() -> bool:
    """Cheap, torch-free: an NVIDIA device node (Linux) or an explicit request to try anyway."""
    return os.environ.get("RECE_BENCH_CUDA_TESTS") == "1" or any(Path("/dev").glob("nvidia[0-9]*"))


if not _has_nvidia_device():
    pytest.skip("no NVIDIA device (/dev/nvidia*): CUDA tests skipped", allow_module_level=True)

import torch  # noqa: E402

if not torch.cuda.is_available():
    pytest.skip(f"torch {torch.__version__} sees no CUDA device: CUDA tests skipped", allow_module_level=True)

import inspect  # noqa: E402

import torch.nn.functional as F  # noqa: E402

from rece_bench.losses import LOSSES, LossBatch, build_loss  # noqa: E402
from rece_bench.losses.base import lookup  # noqa: E402

CUDA = torch.device("cuda")
MIB = 1 << 20

# Small values for parameters a tiny catalogue cannot take at their defaults (n_negatives 256 > C), and settings
# that make RECE do real bucketing with several rounds. Parameters not named here keep their defaults.
SMALL_PARAMS = {"n_negatives": 5, "n_buckets": 4, "n_extra_chunks": 1, "rounds": 3}
TINY_BLOCK = {"block_mib": 1e-3}  # many blocks or groups: the streamed paths

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


def _generator_for(name: str, device: torch.device) -> dict:
    names = {spec.name for spec in lookup(name).params}
    return {"generator": torch.Generator(device).manual_seed(0)} if "generator" in names else {}


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


def _value_and_grads(loss, hidden, item_emb, targets, batch, device, dtype):
    h = hidden.to(device=device, dtype=dtype).requires_grad_()
    e = item_emb.to(device=device, dtype=dtype).requires_grad_()
    moved = LossBatch(batch.seq_index.to(device), batch.seen_items.to(device))
    value = loss(h, e, targets.to(device), moved)
    grad_h, grad_e = torch.autograd.grad(value, (h, e))
    return [t.detach().to("cpu", torch.float64) for t in (value, grad_h, grad_e)]


def _assert_close(got, want, tol: float, what: str) -> None:
    for part, a, b in zip(("value", "grad hidden", "grad item_emb"), got, want, strict=True):
        assert torch.isfinite(a).all(), f"{what}: {part} is not finite"
        torch.testing.assert_close(a, b, atol=tol, rtol=tol, msg=lambda m, p=part: f"{what}: {p}: {m}")


def _cuda_against_cpu(name: str, params: dict, dtype: torch.dtype, monkeypatch, **sizes) -> None:
    hidden, item_emb, targets, batch = _problem(**sizes)
    if dtype == torch.float32:  # the CPU reference sees the same rounded inputs: only arithmetic differs
        hidden, item_emb = hidden.float().double(), item_emb.float().double()
    num_items = item_emb.shape[0]
    draws = _Draws(monkeypatch)
    draws.mode = "record"
    on_cuda = build_loss(name, num_items=num_items, **params, **_generator_for(name, CUDA)).to(CUDA)
    got = _value_and_grads(on_cuda, hidden, item_emb, targets, batch, CUDA, dtype)
    torch.cuda.synchronize()
    draws.mode = "replay"
    on_cpu = build_loss(name, num_items=num_items, **params, **_generator_for(name, torch.device("cpu")))
    want = _value_and_grads(on_cpu, hidden, item_emb, targets, batch, "cpu", torch.float64)
    draws.mode = "off"
    assert draws.replayed_all(), f"{name}: the CUDA run drew {len(draws.draws)} times, the CPU run {draws.cursor}"
    tol = 1e-9 if dtype == torch.float64 else 2e-4
    _assert_close(got, want, tol, f"{name} {params} {dtype} on CUDA vs CPU float64")


# ---------------------------------------------------------------- the losses


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_on_cuda_matches_itself_on_cpu_in_float64(name, dtype, monkeypatch):
    _cuda_against_cpu(name, _params_for(name), dtype, monkeypatch)


@pytest.mark.parametrize("name", sorted(n for n in LOSSES if "block_mib" in {s.name for s in LOSSES[n].params}))
def test_streamed_blocks_on_cuda_match_cpu(name, monkeypatch):
    """Tiny working blocks: many item blocks (ce_chunked) or chunk groups (rece), on a larger catalogue."""
    _cuda_against_cpu(name, _params_for(name, TINY_BLOCK), torch.float32, monkeypatch, n_positions=300,
                      num_items=2_001, dim=16, seq_len=50)  # fmt: skip


def _dense_ce(hidden, item_emb, targets):
    return F.cross_entropy(hidden @ item_emb.T, targets)  # (N, C) logits


@pytest.mark.parametrize(
    ("name", "params"),
    [("ce", {}), ("ce_chunked", {}), ("ce_chunked", TINY_BLOCK), ("rece", {"n_buckets": 1, "rounds": 2}),
     ("rece", {"n_buckets": 4, "n_extra_chunks": 3, "rounds": 3})],
)  # fmt: skip
def test_exact_losses_on_cuda_equal_dense_ce(name, params):
    """Full CE, its chunked twin, and RECE where every chunk sees the catalogue (one bucket, or n_ec >= n_c - 1)."""
    if name not in LOSSES:
        pytest.skip(f"{name} is not registered")
    hidden, item_emb, targets, batch = _problem()
    loss = build_loss(name, num_items=item_emb.shape[0], **params).to(CUDA)
    got = _value_and_grads(loss, hidden, item_emb, targets, batch, CUDA, torch.float64)
    h, e = hidden.clone().requires_grad_(), item_emb.clone().requires_grad_()
    value = _dense_ce(h, e, targets)
    want = [value.detach(), *torch.autograd.grad(value, (h, e))]
    _assert_close(got, want, 1e-9, f"{name} {params} on CUDA vs dense CE")


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_seeded_cuda_generator_repeats_and_large_logits_stay_finite(name):
    """A CUDA generator with the same seed gives the same value; float32 logits around +-80 stay finite."""
    hidden, item_emb, targets, batch = _problem()
    hidden = hidden * 12.0
    values = []
    for _ in range(2):
        loss = build_loss(name, num_items=item_emb.shape[0], **_params_for(name), **_generator_for(name, CUDA))
        values.append(_value_and_grads(loss.to(CUDA), hidden, item_emb, targets, batch, CUDA, torch.float32))
    for part in values[0]:
        assert torch.isfinite(part).all(), name
    for a, b in zip(*values, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- memory measurement


def test_cuda_peak_is_the_allocator_peak_after_a_reset_with_nvml_beside_it():
    from rece_bench.memory import CUDA_METHOD, PeakMemory, nvml_used_bytes

    keep = torch.empty(8 * MIB, dtype=torch.uint8, device=CUDA)  # live at the window's start
    big = torch.empty(256 * MIB, dtype=torch.uint8, device=CUDA)
    del big  # an earlier peak the window must not see
    torch.cuda.synchronize()
    with PeakMemory(CUDA) as meter:
        start = torch.cuda.memory_allocated(CUDA)
        scratch = torch.empty(64 * MIB, dtype=torch.uint8, device=CUDA)
        del scratch
    stats = meter.stats
    assert stats.method == CUDA_METHOD and stats.start_bytes == start
    assert 64 * MIB <= stats.peak_delta_bytes <= 64 * MIB + 2 * MIB, stats  # not the 256 MiB before the window
    nvml = nvml_used_bytes(torch.cuda.current_device())
    if nvml is not None:  # NVML counts the whole device: the context and the cached blocks too
        assert nvml >= stats.peak_bytes, (nvml, stats)
    with PeakMemory(CUDA) as second:
        small = torch.empty(4 * MIB, dtype=torch.uint8, device=CUDA)
        del small
    assert 4 * MIB <= second.stats.peak_delta_bytes < 64 * MIB, "the peak was not reset between windows"
    del keep


def test_bench_loss_on_cuda_counts_inputs_and_their_gradients():
    from rece_bench.bench_loss import BenchLossConfig, run_bench_loss

    config = BenchLossConfig(items=(5_000,), positions=512, dim=32, losses=tuple(sorted(LOSSES)), repeats=2,
                             device="cuda", params=_bench_params())  # fmt: skip
    rows = run_bench_loss(config, results_root=None).rows
    inputs = 2 * (512 + 5_000) * 32 * 4
    for row in rows:
        assert row.status == "ok", row
        assert row.memory_method == "cuda_allocator"
        assert row.peak_bytes >= inputs and row.median_time_s > 0, row
    ce = next((r for r in rows if r.loss == "ce"), None)
    if ce is not None:
        assert ce.peak_beyond_inputs_bytes >= 512 * 5_000 * 4  # the (N, C) logits


def _bench_params() -> tuple:
    return tuple((name, key, value) for name in sorted(LOSSES) for key, value in _params_for(name).items())


# ---------------------------------------------------------------- the budget probe


def test_cap_cuda_memory_refuses_an_allocation_above_the_budget_and_the_probe_lifts_it(tiny_data_root, tiny_config):
    from rece_bench.budget import cap_cuda_memory, measure_peak
    from rece_bench.train import load_run_data

    free_before = torch.cuda.mem_get_info(CUDA)[0]
    assert free_before > 512 * MIB
    try:
        cap_cuda_memory("cuda", 256 * MIB)
        torch.cuda.empty_cache()
        small = torch.empty(64 * MIB, dtype=torch.uint8, device=CUDA)
        del small
        with pytest.raises(torch.OutOfMemoryError):
            torch.empty(512 * MIB, dtype=torch.uint8, device=CUDA)
        # A probe after a capped run must measure, not fail: measure_peak lifts the cap first.
        config = tiny_config(loss="rece", device="cuda", loss_params={"n_extra_chunks": 1, "rounds": 2})
        data = load_run_data(tiny_data_root, config.dataset, config.max_len)
        peak = measure_peak(config, data, steps=2)
        assert peak is not None and peak > 0
        big = torch.empty(512 * MIB, dtype=torch.uint8, device=CUDA)  # the cap is gone
        del big
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, CUDA)
        torch.cuda.empty_cache()


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_probe_on_cuda_is_close_to_the_cpu_live_tensor_peak(loss, tiny_data_root, tiny_config):
    """The two devices measure the same tensors. The allocator rounds blocks up and cuBLAS takes its workspace (tens
    of MiB) inside the window, so allow a factor and a constant; a peak off by more means a method misses something."""
    from rece_bench.budget import measure_peak
    from rece_bench.train import load_run_data

    params = _params_for(loss)
    cpu = tiny_config(loss=loss, loss_params=params)
    data = load_run_data(tiny_data_root, cpu.dataset, cpu.max_len)
    cpu_peak = measure_peak(cpu, data, steps=2)
    cuda_peak = measure_peak(tiny_config(loss=loss, loss_params=params, device="cuda"), data, steps=2)
    assert cpu_peak and cuda_peak
    assert 0.5 * cpu_peak <= cuda_peak <= 2 * cpu_peak + 128 * MIB, (loss, cpu_peak, cuda_peak)


# ---------------------------------------------------------------- whole runs


def test_training_run_on_cuda_ends_ok_with_the_allocator_peak(tiny_data_root, tiny_config, tmp_path):
    from rece_bench.train import train_run

    config = tiny_config(loss="rece", device="cuda", epochs=2, loss_params={"n_extra_chunks": 1, "rounds": 2})
    result = train_run(config, tiny_data_root, tmp_path)
    assert result.status == "ok", result.message
    assert result.device.startswith("cuda") and result.memory_method == "cuda_allocator"
    assert result.peak_bytes >= result.start_bytes > 0
    assert 0.0 <= result.metrics["ndcg@10"] <= 1.0


def test_bench_step_on_cuda_measures_every_loss(tiny_data_root):
    from rece_bench.bench_step import StepBenchConfig, run_step_benchmark

    configs = tuple((name, _params_for(name)) for name in sorted(LOSSES))
    bench = StepBenchConfig(dataset="tiny", data_root=tiny_data_root, configs=configs, batch_size=16, max_len=12,
                            dim=16, steps=2, warmup=1, device="cuda")  # fmt: skip
    rows = run_step_benchmark(bench)
    assert [r.loss for r in rows] == [c[0] for c in configs]
    for row in rows:
        assert row.device.startswith("cuda") and row.peak_bytes > 0 and row.step_time_s > 0, row


def test_signature_of_loss_forward_is_the_shared_one():
    """Guards the registry-driven tests above: every loss takes (hidden, item_emb, targets, batch)."""
    for name, cls in LOSSES.items():
        names = list(inspect.signature(cls.forward).parameters)[1:5]
        assert names == ["hidden", "item_emb", "targets", "batch"], name
