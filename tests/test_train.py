import json

import pytest
import torch

from rece_bench.results import read_results
from rece_bench.training import driver as train_module
from rece_bench.training import session as run_module
from rece_bench.training.driver import train_run


class StopAfterEpoch:
    """A progress that presses Ctrl-C at the end of epoch ``n`` (after its checkpoint)."""

    def __init__(self, n):
        self.n = n

    def start(self, epochs, steps_per_epoch):
        pass

    def step(self, loss, peak_bytes):
        pass

    def epoch(self, epoch, train_loss, valid_ndcg):
        if epoch == self.n:
            raise KeyboardInterrupt


def _result_files(results_root):
    return sorted((results_root / "runs").glob("*.json"))


def test_a_run_writes_one_result_with_metrics_memory_and_history(tiny_data_root, tiny_config, tmp_path):
    result = train_run(tiny_config(), tiny_data_root, tmp_path)
    assert result.status == "ok"
    assert result.epochs == 3 and len(result.history) == 3
    names = {"ndcg@1", "ndcg@5", "ndcg@10", "hr@1", "hr@5", "hr@10"}
    assert set(result.metrics) == names | {f"{name}_se" for name in names}
    # a standard error of the mean over test users: for 0/1 hits, sqrt(p (1 - p) / (U - 1)) exactly
    n_users = len(train_module.load_run_data(tiny_data_root, "tiny", 12).test)
    hit_rate = result.metrics["hr@10"]
    assert result.metrics["hr@10_se"] == pytest.approx((hit_rate * (1 - hit_rate) / (n_users - 1)) ** 0.5)
    assert 0 < result.metrics["ndcg@10_se"] < result.metrics["ndcg@10"]
    assert result.eval_peak_bytes > 0
    assert result.peak_bytes > result.start_bytes > 0
    assert result.memory_method == "cpu_live_tensors"
    assert result.train_time_s > 0
    files = _result_files(tmp_path)
    assert len(files) == 1
    saved = json.loads(files[0].read_text())
    assert saved["params"]["batch_size"] == 32 and saved["status"] == "ok"


@pytest.mark.parametrize(
    "loss,params",
    [("ce", {}), ("rece", {"n_extra_chunks": 1, "rounds": 2}), ("bce", {"n_negatives": 4})],
    ids=["ce", "rece-random-projections", "bce-sampled-negatives"],
)
def test_resume_after_an_interruption_ends_with_the_metrics_of_a_straight_run(
    loss, params, tiny_data_root, tiny_config, tmp_path, monkeypatch
):
    config = tiny_config(loss=loss, loss_params=params)
    straight = train_run(config, tiny_data_root, tmp_path / "straight")

    root = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train_run(config, tiny_data_root, root, progress=StopAfterEpoch(1))
    interrupted = read_results(root)
    assert [r["status"] for r in interrupted] == ["interrupted"] and interrupted[0]["epochs"] == 1

    resumed = train_run(config, tiny_data_root, root, resume=True)
    assert resumed.status == "ok" and resumed.epochs == straight.epochs
    assert resumed.metrics == straight.metrics
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    assert len(_result_files(root)) == 1  # the interrupted result was replaced


def test_resume_from_an_older_checkpoint_format_is_a_clear_error(tiny_data_root, tiny_config, tmp_path):
    from rece_bench.data.loader import dataset_identity
    from rece_bench.errors import UserError
    from rece_bench.training.checkpoint import LAST, checkpoint_dir

    config = tiny_config()
    with pytest.raises(KeyboardInterrupt):
        train_run(config, tiny_data_root, tmp_path, progress=StopAfterEpoch(1))
    data_id = dataset_identity(tiny_data_root, "tiny")
    last = checkpoint_dir(tmp_path, run_module.run_id_of(config, data_id)) / LAST
    torch.save({"model": {"item_emb.weight": torch.zeros(4, 16)}}, last)  # format 1: a pad row, no "format" key
    with pytest.raises(UserError, match="has format 1, this version resumes format 2: run again with --restart"):
        train_run(config, tiny_data_root, tmp_path, resume=True)


def test_resume_without_a_checkpoint_is_a_clear_error(tiny_data_root, tiny_config, tmp_path):
    from rece_bench.errors import UserError

    with pytest.raises(UserError, match="nothing to resume"):
        train_run(tiny_config(), tiny_data_root, tmp_path, resume=True)


def test_a_nan_loss_stops_the_run_as_diverged(tiny_data_root, tiny_config, tmp_path, monkeypatch):
    real_build = run_module.build_loss_for
    poisoned = {"on": False}

    class NanWhenPoisoned(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, hidden, item_emb, targets, batch=None):
            value = self.inner(hidden, item_emb, targets, batch)
            return value * float("nan") if poisoned["on"] else value

    class PoisonAfterFirstEpoch:
        def start(self, epochs, steps_per_epoch):
            pass

        def step(self, loss, peak_bytes):
            pass

        def epoch(self, epoch, train_loss, valid_ndcg):
            poisoned["on"] = True

    monkeypatch.setattr(run_module, "build_loss_for", lambda *a: NanWhenPoisoned(real_build(*a)))
    result = train_run(tiny_config(), tiny_data_root, tmp_path, progress=PoisonAfterFirstEpoch())
    assert result.status == "diverged"
    assert "epoch 2" in result.message and result.epochs == 1
    assert result.metrics == {}
    assert len(_result_files(tmp_path)) == 1


def test_an_allocator_failure_becomes_status_oom(tiny_data_root, tiny_config, tmp_path, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(train_module, "train_step", out_of_memory)
    result = train_run(tiny_config(batch_size=64), tiny_data_root, tmp_path)
    assert result.status == "oom"
    assert "batch 64" in result.message and "out of memory" in result.message
    assert len(_result_files(tmp_path)) == 1


def test_cpu_allocation_failure_is_oom_but_other_errors_propagate(tiny_data_root, tiny_config, tmp_path, monkeypatch):
    def cpu_oom(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(train_module, "train_step", cpu_oom)
    assert train_run(tiny_config(), tiny_data_root, tmp_path).status == "oom"

    def bug(*a, **k):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(train_module, "train_step", bug)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        train_run(tiny_config(), tiny_data_root, tmp_path / "other")
