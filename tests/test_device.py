"""device.py, the one owner of where and how a run computes: the resolver with CUDA mocked away, the precision's
autocast and scaler, the memory cap called with an indexed device, and NVML reading the GPU torch uses."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import pytest
import torch

from rece_bench.device import Compute, compute_for, nvml_used_bytes, resolve_device
from rece_bench.errors import UserError

GIB = 1 << 30


@pytest.fixture
def fake_cuda(monkeypatch):
    """A machine with two CUDA devices, the current one index 1, 80 GiB each; records the caps set."""
    caps: list[tuple[float, torch.device]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda device: types.SimpleNamespace(total_memory=80 * GIB)
    )
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, d=None: caps.append((f, d)))
    return caps


def test_cuda_without_an_index_resolves_to_the_current_device(fake_cuda):
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    assert resolve_device(torch.device("cuda")) == torch.device("cuda", 1)
    assert compute_for("cuda").device.index == 1


def test_bad_devices_are_user_errors_naming_the_fix(fake_cuda, monkeypatch):
    with pytest.raises(UserError, match="cuda:0 .. cuda:1"):
        resolve_device("cuda:2")
    with pytest.raises(UserError, match="use cpu, cuda or cuda:N"):
        resolve_device("gpu please")
    with pytest.raises(UserError, match="only cpu and cuda"):
        resolve_device("meta")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="use --device cpu"):
        resolve_device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")


def test_the_cap_gets_an_indexed_device_and_the_budget_share_of_the_gpu(fake_cuda):
    compute = compute_for("cuda")
    compute.cap_memory(2 * GIB)
    compute.cap_memory(None)  # lifts it
    assert fake_cuda == [(2 / 80, torch.device("cuda", 1)), (1.0, torch.device("cuda", 1))]
    assert all(device.index is not None for _, device in fake_cuda)
    compute_for("cpu").cap_memory(2 * GIB)  # nothing to cap on CPU
    assert len(fake_cuda) == 2


def test_a_budgeted_run_on_cuda_caps_with_an_indexed_device(
    fake_cuda, tiny_data_root, tiny_config, tmp_path, monkeypatch
):
    """`run --budget 2GB --device cuda` crashed here: the cap got torch.device('cuda'), which has no index."""
    from rece_bench.budget import fit
    from rece_bench.budget.choice import Probe
    from rece_bench.budget.fit import train_within_budget
    from rece_bench.budget.plan import Budget
    from rece_bench.results import RunResult

    def probe(candidate):
        return Probe(candidate, 100 * 2**20, 0.0)

    def trainer(config, data_root, results_root, progress=None, resume=False, data=None):
        return RunResult("r", config.dataset, config.loss, config.hyperparameters(), 1, config.device, "ok")

    monkeypatch.setattr(fit, "Prober", lambda *args, **kwargs: probe)
    config = tiny_config(device="cuda")
    done = train_within_budget(config, Budget(2 * 10**9), tiny_data_root, tmp_path, trainer=trainer)
    assert done.result.status == "ok"
    assert fake_cuda == [(2 * 10**9 / (80 * GIB), torch.device("cuda", 1))]


def test_precisions_give_autocast_and_a_scaler_for_fp16_only():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with compute_for("cpu", "bf16").autocast():
        assert (a @ b).dtype == torch.bfloat16
    with compute_for("cpu", "fp16").autocast():
        assert (a @ b).dtype == torch.float16
    with torch.autocast("cpu", dtype=torch.bfloat16), compute_for("cpu", "fp32").autocast():
        assert (a @ b).dtype == torch.float32  # fp32 turns an outer autocast off
    assert compute_for("cpu", "fp16").grad_scaler() is not None
    assert compute_for("cpu", "bf16").grad_scaler() is None and compute_for("cpu").grad_scaler() is None
    with pytest.raises(UserError, match="fp32, bf16, fp16"):
        compute_for("cpu", "fp64")


def test_compute_on_cpu_has_no_allocator_peak_and_passes_through():
    compute = compute_for("cpu")
    assert compute_for(compute) is compute
    assert compute.reset_peak() == 0 and compute.allocator_peak_bytes() is None
    assert compute.nvml_used_bytes() is None and compute.free_bytes() is None
    compute.synchronize()
    assert compute.describe() == "cpu"


# ---------------------------------------------------------------- NVML reads the GPU torch uses


@dataclass
class _Props:
    uuid: str
    pci_domain_id: int
    pci_bus_id: int
    pci_device_id: int
    total_memory: int = 80 * GIB


class _FakeNvml(types.ModuleType):
    """NVML of a machine whose GPUs (by NVML's own order) hold 1, 2 and 3 GiB."""

    def __init__(self, uuid_works: bool = True) -> None:
        super().__init__("pynvml")
        self.uuids = {b"GPU-aaaa": 0, b"GPU-bbbb": 1, b"GPU-cccc": 2}
        self.buses = {b"00000000:1a:00.0": 0, b"00000000:3b:00.0": 1, b"00000000:5e:00.0": 2}
        self.uuid_works, self.shut = uuid_works, 0

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        self.shut += 1

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetHandleByUUID(self, uuid):
        if not self.uuid_works:
            raise RuntimeError("NVML_ERROR_NOT_FOUND")
        return self.uuids[uuid]

    def nvmlDeviceGetHandleByPciBusId(self, bus_id):
        return self.buses[bus_id.lower()]

    def nvmlDeviceGetMemoryInfo(self, handle):
        return types.SimpleNamespace(used=(handle + 1) * GIB)


def _torch_sees(monkeypatch, props_by_index: dict[int, _Props]) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props_by_index[device.index])


def test_nvml_reads_the_gpu_with_torchs_uuid_not_gpu_0(monkeypatch):
    """A Ray worker given NVML's GPU 2 sees it as cuda:0 (CUDA_VISIBLE_DEVICES renumbers); cuda:1 is NVML's 0."""
    fake = _FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    _torch_sees(monkeypatch, {0: _Props("cccc", 0, 0x5E, 0), 1: _Props("aaaa", 0, 0x1A, 0)})
    assert nvml_used_bytes(torch.device("cuda", 0)) == 3 * GIB
    assert nvml_used_bytes(torch.device("cuda", 1)) == 1 * GIB
    assert fake.shut == 2  # NVML is shut down after every reading


def test_nvml_falls_back_to_the_pci_bus_id(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _FakeNvml(uuid_works=False))
    _torch_sees(monkeypatch, {0: _Props("bbbb", 0, 0x3B, 0)})
    assert nvml_used_bytes(torch.device("cuda", 0)) == 2 * GIB
    assert Compute(torch.device("cuda", 0)).nvml_used_bytes() == 2 * GIB


def test_nvml_missing_gives_none(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    assert nvml_used_bytes(torch.device("cuda", 0)) is None


# ---------------------------------------------------------------- a streaming loss's working block


def test_the_trainer_fills_a_streaming_losss_block_from_the_budget_and_an_explicit_one_wins(monkeypatch, tiny_config):
    from rece_bench.device import MIB, gpu_block_bytes
    from rece_bench.training.session import working_loss_params

    cpu = torch.device("cpu")
    assert working_loss_params(tiny_config(loss="ce_chunked"), cpu, None) == {"block_mib": 32.0}
    assert working_loss_params(tiny_config(loss="ce"), cpu, None) == {}  # no block_mib parameter
    given = tiny_config(loss="ce_chunked", loss_params={"block_mib": 4.0})
    assert working_loss_params(given, cpu, 10**9) == {"block_mib": 4.0}
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    budget = 8 * 2**30
    on_gpu = working_loss_params(tiny_config(loss="ce_chunked"), torch.device("cuda", 0), budget)
    assert on_gpu == {"block_mib": gpu_block_bytes(0, budget) / MIB} and on_gpu["block_mib"] == 512.0
