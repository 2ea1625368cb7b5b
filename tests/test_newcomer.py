"""Issue 23, what a newcomer met: fair timings by default (threads), a report that compares like with like, no lost
progress (locks, --restart, signals), a tour that runs, and the faults that still gave tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rece_bench.cli import app

runner = CliRunner()
TINY_RUN = ["--epochs", "1", "--batch-size", "32", "--max-len", "12", "--dim", "16"]


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = result.output.strip()
    assert text.startswith("error:") and len(text.splitlines()) <= 2, text
    for needle in needles:
        assert needle in text, text


def _saved(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((results / "runs").glob("*.json"))]


# ---------------------------------------------------------------- 1. threads: one policy, recorded, shown


def test_every_training_or_benchmark_command_takes_threads():
    for command in ("run", "sweep", "demo", "bench-step", "bench-loss"):
        shown = _invoke(command, "--help")
        assert shown.exit_code == 0 and "--threads" in shown.output, command


def test_a_run_trains_at_one_thread_by_default_and_records_it(tmp_path, tiny_data_root, monkeypatch):
    import torch

    from rece_bench.training import driver as train

    seen = []
    real_step = train.train_step
    monkeypatch.setattr(train, "train_step", lambda *a: (seen.append(torch.get_num_threads()), real_step(*a))[1])
    before = torch.get_num_threads()
    results = tmp_path / "results"
    ran = _invoke("run", "--dataset", "tiny", *TINY_RUN, "--data-dir", tiny_data_root, "--results-dir", results)
    assert ran.exit_code == 0, ran.output
    assert set(seen) == {1} and torch.get_num_threads() == before  # applied while training, restored after
    assert _saved(results)[0]["threads"] == 1
    again = _invoke("run", "--dataset", "tiny", *TINY_RUN, "--seed", "8", "--threads", "2",
                    "--data-dir", tiny_data_root, "--results-dir", results)  # fmt: skip
    assert again.exit_code == 0, again.output
    assert sorted(row["threads"] for row in _saved(results)) == [1, 2]
    assert 2 in seen


def test_threads_is_no_part_of_a_runs_identity_and_bad_values_are_refused(tiny_config):
    from rece_bench.training.session import run_id_of

    assert run_id_of(tiny_config(threads=1)) == run_id_of(tiny_config(threads=4))
    _one_line_error(_invoke("run", "--dataset", "tiny", "--threads", "0"), "threads", "--threads 1")


def test_the_sweep_engines_share_one_thread_policy():
    from rece_bench.threads import job_threads

    assert job_threads(None) == 1  # local: one thread per job
    assert job_threads(None, cpus_per_job=3) == 3  # Ray: the CPUs each job is given
    assert job_threads(2, cpus_per_job=3) == 2  # an explicit --threads wins on both


# ---------------------------------------------------------------- 5. SIGTERM is Ctrl-C for every command


def _cli_process(*args, cwd: Path | None = None):
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "160"}
    env.pop("RECE_BENCH_FAULT", None)
    code = "import sys; from rece_bench.cli import app; sys.argv[0] = 'rece-bench'; app()"
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)], env=env, cwd=cwd, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_for_running(results: Path, process, timeout_s: float = 120.0) -> None:
    """Until a result file of ``results`` says running (training has begun), or the process has ended."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        for path in (results / "runs").glob("*.json"):
            try:
                if json.loads(path.read_text())["status"] == "running":
                    return
            except (ValueError, KeyError):
                pass  # not yet whole
        time.sleep(0.05)
    raise AssertionError(f"no run started under {results}: {process.communicate()}")


def test_sigterm_stops_run_budget_like_ctrl_c(tmp_path, tiny_data_root):
    """The real CLI in a subprocess: the result says interrupted, one line, exit 130 (SIGTERM's own is 143)."""
    import signal

    results = tmp_path / "results"
    args = ["run", "--dataset", "tiny", "--budget", "1GB", "--dim", "16", "--epochs", "500", "--patience", "500"]
    process = _cli_process(*args, "--max-len", "12", "--data-dir", tiny_data_root, "--results-dir", results)
    _wait_for_running(results, process)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, (out, err)
    assert "interrupted" in out and "Traceback" not in out + err, (out, err)
    assert [row["status"] for row in _saved(results)] == ["interrupted"]


def test_sigterm_stops_a_sweep_and_the_demo_while_training(tmp_path, tiny_data_root, monkeypatch):
    """In process (the same app callback sets the policy): SIGTERM at the first training step of each."""
    import os
    import signal

    from rece_bench.training import driver as train

    monkeypatch.setattr(train, "fit", lambda *a: os.kill(os.getpid(), signal.SIGTERM))  # in train_run only
    sweep = ["sweep", "--dataset", "tiny", "--loss", "ce", "--budget", "1GB", "--max-len", "12"]
    commands = {"sweep": [*sweep, "--data-dir", tiny_data_root], "demo": ["demo", "--data-dir", tmp_path / "data"]}
    for name, args in commands.items():
        results = tmp_path / name
        result = _invoke(*args, "--results-dir", results)
        assert result.exit_code == 130 and "interrupted" in result.output, (name, result.output)
        statuses = [row["status"] for row in _saved(results) if row["loss"] != "popularity"]
        assert statuses == ["interrupted"], (name, statuses)


@pytest.mark.parametrize("command", ["bench-step", "prepare"])
def test_sigterm_is_one_line_and_exit_130_in_every_command(command, tmp_path, monkeypatch):
    """In process: each command's work sends this process SIGTERM; the app's policy turns it into Ctrl-C."""
    import os
    import signal

    from rece_bench.bench import demo
    from rece_bench.bench import step as bench_step
    from rece_bench.data import prepare

    def terminate(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the command")

    for module, name in ((demo, "run_demo"), (bench_step, "load_run_data"), (prepare, "prepare_dataset")):
        monkeypatch.setattr(module, name, terminate)
    args = {"demo": ["demo"], "bench-step": ["bench-step", "--dataset", "x"], "prepare": ["prepare", "synthetic"]}
    previous = signal.getsignal(signal.SIGTERM)
    results = [] if command == "prepare" else ["--results-dir", tmp_path / "results"]
    result = _invoke(*args[command], "--data-dir", tmp_path / "data", *results)
    assert result.exit_code == 130, result.output
    assert "interrupted" in result.output and "Traceback" not in result.output
    assert signal.getsignal(signal.SIGTERM) == previous  # the handler is the command's only


# ---------------------------------------------------------------- 4. no progress lost: --resume, --restart, data


def _stopped_after_one_epoch(tiny_data_root, results, tiny_config):
    """A run interrupted after its first epoch (checkpoint kept), as Ctrl-C or SIGTERM leaves it."""
    from rece_bench.training.driver import train_run

    class StopAfterFirstEpoch:
        def start(self, epochs, steps):
            pass

        def step(self, loss, peak):
            pass

        def epoch(self, epoch, loss, ndcg):
            raise KeyboardInterrupt

    config = tiny_config(epochs=3, patience=3)
    with pytest.raises(KeyboardInterrupt):
        train_run(config, tiny_data_root, results, progress=StopAfterFirstEpoch())
    return config


def test_rerunning_a_stopped_run_without_resume_is_an_error_and_keeps_its_checkpoint(tmp_path, tiny_data_root,
                                                                                     tiny_config):  # fmt: skip
    from rece_bench.training.checkpoint import LAST, checkpoint_dir

    results = tmp_path / "results"
    _stopped_after_one_epoch(tiny_data_root, results, tiny_config)
    (last,) = (results / "checkpoints").glob(f"*/{LAST}")
    kept = last.read_bytes()
    args = ["run", "--dataset", "tiny", "--epochs", "3", "--patience", "3", "--batch-size", "32", "--max-len", "12",
            "--dim", "16", "--seed", "7", "--data-dir", tiny_data_root, "--results-dir", results]  # fmt: skip
    _one_line_error(_invoke(*args), "--resume", "--restart", "after epoch 1")
    assert last.read_bytes() == kept  # nothing deleted
    _one_line_error(_invoke(*args, "--resume", "--restart"), "contradict")
    resumed = _invoke(*args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert _saved(results)[0]["status"] == "ok" and _saved(results)[0]["epochs"] == 3
    assert not (checkpoint_dir(results, _saved(results)[0]["run_id"]) / LAST).exists()


def test_a_finished_run_is_not_overwritten_unless_restart(tmp_path, tiny_data_root):
    results = tmp_path / "results"
    args = ["run", "--dataset", "tiny", *TINY_RUN, "--data-dir", tiny_data_root, "--results-dir", results]
    assert _invoke(*args).exit_code == 0
    first = (results / "runs").glob("*.json").__next__().read_bytes()
    _one_line_error(_invoke(*args), "already finished", "--restart")
    assert next((results / "runs").glob("*.json")).read_bytes() == first
    again = _invoke(*args, "--restart")
    assert again.exit_code == 0, again.output
    assert next((results / "runs").glob("*.json")).read_bytes() != first  # trained again, on purpose


def test_a_runs_identity_includes_its_datas_preparation(tmp_path, tiny_data_root):
    """Prepared again with another catalogue, the same command is another run: no resume of a checkpoint whose
    item table has the old size (a traceback before), and the old result stays beside the new one."""
    import shutil

    from rece_bench.data.prepare import PrepareConfig, SyntheticSpec, prepare_dataset

    data, results = tmp_path / "data", tmp_path / "results"
    shutil.copytree(tiny_data_root / "tiny", data / "tiny")
    args = ["run", "--dataset", "tiny", *TINY_RUN, "--data-dir", data, "--results-dir", results]
    assert _invoke(*args).exit_code == 0
    spec = SyntheticSpec(users=300, items=150, interactions=6_000, seed=4)
    prepare_dataset(PrepareConfig(dataset="synthetic", data_root=data, name="tiny", synthetic=spec, force=True))
    _one_line_error(_invoke(*args, "--resume"), "nothing to resume", "this preparation")
    again = _invoke(*args)
    assert again.exit_code == 0, again.output
    rows = _saved(results)
    assert len(rows) == 2 and len({row["data_id"] for row in rows}) == 2 and len({r["run_id"] for r in rows}) == 2


# ---------------------------------------------------------------- 6. one process per run, atomically


def test_two_identical_runs_started_together_exactly_one_trains(tmp_path, tiny_data_root, tiny_config):
    """Two threads start the same run at once (flock locks conflict between two opens in one process too)."""
    import threading

    from rece_bench.errors import UserError
    from rece_bench.training.driver import train_run

    results, config = tmp_path / "results", tiny_config(epochs=1)
    barrier, outcomes = threading.Barrier(2), []

    def start():
        barrier.wait()
        try:
            outcomes.append(train_run(config, tiny_data_root, results).status)
        except UserError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    refused = [o for o in outcomes if o != "ok"]
    assert outcomes.count("ok") == 1 and len(refused) == 1, outcomes
    assert "already" in refused[0], refused  # running (the lock) or finished (the loser came after the winner)
    assert len(_saved(results)) == 1


def test_a_held_lock_refuses_with_one_line_and_a_dead_holders_lock_is_taken_over(tmp_path, tiny_data_root):
    import os
    import subprocess
    import sys

    from rece_bench.config import TrainConfig
    from rece_bench.data.loader import dataset_identity
    from rece_bench.lock import RunLock, lock_path
    from rece_bench.training.session import run_id_of

    results = tmp_path / "results"
    args = ["run", "--dataset", "tiny", *TINY_RUN, "--data-dir", tiny_data_root, "--results-dir", results]
    config = TrainConfig(dataset="tiny", epochs=1, batch_size=32, max_len=12, dim=16)
    run_id = run_id_of(config, dataset_identity(tiny_data_root, "tiny"))
    held = RunLock(lock_path(results, run_id), run_id).acquire()
    try:
        _one_line_error(_invoke(*args), "already running", f"pid {os.getpid()}")
    finally:
        held.release()
    assert not (results / "runs").exists()  # nothing written by the refused run
    code = "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX)"
    path = lock_path(results, run_id)
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)  # locked, then its process ended
    assert path.exists()
    ran = _invoke(*args)
    assert ran.exit_code == 0, ran.output
    assert not path.exists()  # let go after the run


# ---------------------------------------------------------------- 2. report compares like with like


def test_report_never_puts_runs_of_different_training_settings_in_one_table(tmp_path, tiny_data_root):
    """The issue's scenario at tiny sizes: a longer RECE run, then a 1-epoch, shorter-sequence CE sweep."""
    results = tmp_path / "results"
    where = ["--data-dir", tiny_data_root, "--results-dir", results]
    ran = _invoke("run", "--dataset", "tiny", "--loss", "rece", "--epochs", "2", "--max-len", "12", "--dim", "16",
                  "--batch-size", "32", *where)  # fmt: skip
    assert ran.exit_code == 0, ran.output
    swept = _invoke("sweep", "--dataset", "tiny", "--loss", "ce", "--budget", "1GB", "--epochs", "1",
                    "--max-len", "10", *where)  # fmt: skip
    assert swept.exit_code == 0, swept.output
    shown = _invoke("report", "--format", "markdown", "--results-dir", results)
    assert shown.exit_code == 0, shown.output
    tables = [part for part in shown.output.split("### ") if "Table 2" in part or "Pareto" in part]
    assert len(tables) == 4  # Table 2 and the front, once per setting
    for table in tables:
        rows = [line for line in table.splitlines() if line.startswith("| ce ") or line.startswith("| rece ")]
        filled = [line for line in rows if "no run fits" not in line and "no finished run" not in line]
        assert len(filled) == 1, table  # never both losses' runs in one table
        assert "[" in table.splitlines()[0] and "never compared" in table  # says which setting, and why apart
    titles = " ".join(table.splitlines()[0] for table in tables)
    for differs in ("epochs 2", "epochs 1", "max_len 12", "max_len 10", "dim 16", "dim 64"):
        assert differs in titles, titles
    assert "1 torch thread(s)" in shown.output


def test_report_of_runs_of_one_setting_has_no_setting_label(tmp_path):
    from rece_bench.report.tables import report_sections, results_frame
    from rece_bench.results import RunResult

    rows = [
        RunResult(run_id=f"r{seed}", dataset="d", loss=loss, params={"epochs": 3, "batch_size": batch}, seed=seed,
                  device="cpu", status="ok", metrics={"ndcg@10": 0.1}, peak_bytes=10, threads=1).to_row()
        for seed, (loss, batch) in enumerate((("ce", 64), ("rece", 128)))
    ]  # fmt: skip
    sections = report_sections(results_frame(rows))
    assert len(sections) == 2 and not any("[" in s.title for s in sections)  # a chosen batch is no setting


# ---------------------------------------------------------------- 7. a sweep trains each configuration once


def test_budgets_that_do_not_bind_train_their_common_configuration_once(tmp_path, tiny_data_root, monkeypatch):
    from rece_bench.training import driver as train

    trained = []
    real_fit = train.fit
    monkeypatch.setattr(train, "fit", lambda run, *a: (trained.append(run.config.budget_bytes), real_fit(run, *a))[1])
    results = tmp_path / "results"
    args = ["sweep", "--dataset", "tiny", "--loss", "ce", "--budget", "1GB", "--budget", "2GB", "--epochs", "1",
            "--max-len", "10", "--threads", "2", "--data-dir", tiny_data_root, "--results-dir", results]  # fmt: skip
    swept = _invoke(*args)
    assert swept.exit_code == 0, swept.output
    assert [row["threads"] for row in _saved(results)] == [2, 2]  # 1: the local engine applies --threads per job
    assert trained == [10**9]  # the smaller budget's job trained; the larger chose the same configuration
    first, second = sorted(_saved(results), key=lambda row: row["budget_bytes"])
    assert first["params"] == second["params"] and second["budget_bytes"] == 2 * 10**9
    assert second["metrics"] == first["metrics"] and first["run_id"] in second["message"]
    again = _invoke(*args)
    assert again.exit_code == 0 and "2 already done" in again.output, again.output  # both count as done


# ---------------------------------------------------------------- 3. the README's tour runs top to bottom

README = Path(__file__).resolve().parents[1] / "README.md"
TOUR_SMALL = {  # flags the commands offer for a small, fast run (appended: the last of a repeated flag wins)
    "prepare synthetic": ["--users", "300", "--items", "120", "--interactions", "6000"],
    "run": ["--epochs", "1", "--max-len", "10", "--dim", "16"],
    "sweep": ["--epochs", "1", "--max-len", "10", "--seeds", "1"],
    "bench-step": ["--steps", "1", "--warmup", "0", "--batch-size", "8", "--max-len", "10", "--config", "ce"],
    "bench-loss": ["--items", "1000", "--positions", "256", "--repeats", "1"],
}


def tour_commands() -> list[str]:
    """The command lines of the README's fenced block under '## The commands', comments dropped."""
    text = README.read_text()
    block = text[text.index("## The commands") :].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.startswith("rece-bench ")]


def tour_args(line: str, here: Path) -> list[str] | str:
    """The arguments to run a tour line at a small size offline, or why it is skipped."""
    import re
    import shlex

    if "..." in line:
        return "a template (`...` stands for options of an earlier line)"
    line = re.sub(r"\[([^\]|]*?)(\|[^\]]*)?\]", lambda m: m.group(1), line)  # [--format a|b] -> --format a
    args = shlex.split(line)[1:]
    if args[:2] == ["prepare", "gowalla"]:
        return "downloads (network)" if "--raw" not in args else "needs the full raw Gowalla file"
    if args[:2] == ["prepare", "custom"]:
        columns = [args[args.index(flag) + 1] for flag in ("--user-col", "--item-col", "--time-col")]
        rows = [f"{u},{i},{u * 100 + i}" for u in range(40) for i in range((u * 7) % 11, (u * 7) % 11 + 25)]
        (here / args[args.index("--file") + 1]).write_text(",".join(columns) + "\n" + "\n".join(rows) + "\n")
    if args[0] == "demo":
        return "the quick start, about 40 s: `make demo` and tests/test_budget.py run it"
    args = ["synth-gowalla" if arg == "gowalla" and args[0] != "prepare" else arg for arg in args]  # offline
    key = " ".join(args[:2]) if args[:2] == ["prepare", "synthetic"] else args[0]
    small = TOUR_SMALL.get(key, [])
    if args[0] == "run" and "--budget" not in args:
        small = [*small, "--batch-size", "16"]
    return [*args, *small]


@pytest.mark.slow  # about 25 s on an idle 2-core CPU: four trainings, a sweep, bench-loss
def test_the_readme_tour_runs_top_to_bottom_at_small_sizes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECE_BENCH_DATA", str(tmp_path / "datasets"))
    monkeypatch.setenv("RECE_BENCH_RESULTS", str(tmp_path / "results"))
    lines = tour_commands()
    assert any(line.startswith("rece-bench prepare synthetic --like gowalla") for line in lines), lines
    ran = []
    for line in lines:
        args = tour_args(line, tmp_path)
        if isinstance(args, str):
            continue  # skipped, with the reason in tour_args
        result = _invoke(*args)
        assert result.exit_code == 0, f"{line}\n-> rece-bench {' '.join(args)}\n{result.output}"
        ran.append(args[0])
    assert {"prepare", "run", "sweep", "report", "bench-step", "popularity"} <= set(ran), ran
    assert (tmp_path / "datasets" / "synth-gowalla" / "meta.json").exists()
    assert not (tmp_path / "datasets" / "synthetic").exists()  # run's default set is not replaced
    listed = _invoke("datasets")
    assert "synth-gowalla" in listed.output and "shop" in listed.output  # sets prepared under their own name


def test_a_missing_synth_gowalla_names_the_command_that_makes_it(tmp_path):
    missing = _invoke("bench-step", "--dataset", "synth-gowalla", "--data-dir", tmp_path, "--results-dir", tmp_path)
    _one_line_error(missing, "rece-bench prepare synthetic --like gowalla")


# ---------------------------------------------------------------- 8. faults that gave tracebacks: one line, exit 2


def _no_space(*args, **kwargs):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_at_a_checkpoint_is_one_line_and_the_earlier_result_is_kept(tmp_path, tiny_data_root,
                                                                                monkeypatch):  # fmt: skip
    from rece_bench.training import checkpoint

    results = tmp_path / "results"
    args = ["run", "--dataset", "tiny", *TINY_RUN, "--data-dir", tiny_data_root, "--results-dir", results]
    assert _invoke(*args).exit_code == 0
    (path,) = (results / "runs").glob("*.json")
    earlier = path.read_bytes()
    monkeypatch.setattr(checkpoint, "atomic_writer", _no_space)
    _one_line_error(_invoke(*args, "--restart"), "No space left on device", "free some space")
    assert path.read_bytes() == earlier and not list(results.rglob(".*.tmp"))


def test_a_full_disk_at_every_result_write_keeps_the_earlier_result_file(tmp_path, tiny_data_root, monkeypatch):
    from rece_bench import results as results_module

    results = tmp_path / "results"
    args = ["run", "--dataset", "tiny", *TINY_RUN, "--data-dir", tiny_data_root, "--results-dir", results]
    assert _invoke(*args).exit_code == 0
    (path,) = (results / "runs").glob("*.json")
    earlier = path.read_bytes()
    real, writes = results_module.atomic_write_json, []

    def full_after_the_first(*a):
        writes.append(a)
        return real(*a) if len(writes) == 1 else _no_space()

    monkeypatch.setattr(results_module, "atomic_write_json", full_after_the_first)
    _one_line_error(_invoke(*args, "--restart"), "No space left on device")
    assert len(writes) == 2  # the start's, an epoch's (refused); the earlier file came back by a rename
    assert path.read_bytes() == earlier and [p.name for p in (results / "runs").iterdir()] == [path.name]


def test_more_faults_are_one_line_errors_and_write_nothing(tmp_path, tiny_data_root):
    results = tmp_path / "results"
    results.mkdir()
    (results / "checkpoints").write_text("not a folder")
    where = ["--data-dir", tiny_data_root, "--results-dir", results]
    _one_line_error(_invoke("run", "--dataset", "tiny", *TINY_RUN, *where), "checkpoints is not a folder")
    _one_line_error(_invoke("run", "--dataset", "tiny", "--max-len", "99999999999", *where), "--max-len <= 100,000")
    for value in ("inf", "nan"):
        _one_line_error(_invoke("run", "--dataset", "tiny", "--lr", value, *where), "lr must be a finite", "--lr")
    grid = tmp_path / "grid.toml"
    grid.write_text('[ce]\nbatch_size = "big"\n')
    budgeted = ["run", "--dataset", "tiny", "--budget", "1GB", "--grid", grid, *where]
    _one_line_error(_invoke(*budgeted), "batch_size = 'big' is not a number")
    grid.write_text('[ce]\nbatch_size = 64\ncuts = [{batch_size = [32, "16"]}]\n')
    _one_line_error(_invoke(*budgeted), "'16' is not a number")
    grid.write_text("[ce]\nbatch_size = 64\n[rece_typo]\nbatch_size = 64\n")  # 9: an unknown loss's section
    _one_line_error(_invoke(*budgeted), "[rece_typo]", "unknown loss")
    assert sorted(p.name for p in results.iterdir()) == ["checkpoints"]  # nothing half written


def test_files_are_written_as_open_makes_them_not_0600(tmp_path):
    import os

    from rece_bench.io import atomic_write_text

    before = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        os.umask(0o027)
        atomic_write_text(tmp_path / "b.json", "{}")
    finally:
        os.umask(before)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o640


# ---------------------------------------------------------------- 9. the plot: one colour per loss, points covered


def _front_rows(dataset: str, losses: dict[str, list[tuple[int, float]]], epochs: int = 3) -> list[dict]:
    from rece_bench.results import RunResult

    rows = []
    for loss, points in losses.items():
        for i, (peak, ndcg) in enumerate(points):
            rows.append(RunResult(
                run_id=f"{dataset}-{loss}-{i}-{epochs}", dataset=dataset, loss=loss, seed=1, device="cpu",
                params={"epochs": epochs, "batch_size": 32 * (i + 1)}, status="ok", metrics={"ndcg@10": ndcg},
                valid_metrics={"ndcg@10": ndcg}, peak_bytes=peak, train_time_s=1.0 + i, threads=1,
            ).to_row())  # fmt: skip
    return rows


def test_the_plot_gives_a_loss_one_colour_and_its_log_axis_covers_every_point():
    import matplotlib.colors

    from rece_bench.report.plot import by_setting, fronts_figure
    from rece_bench.report.tables import configurations, pareto_fronts, results_frame

    rows = _front_rows("a", {"rece": [(3 * 2**20, 0.02), (40 * 2**20, 0.03)], "ce": [(90 * 2**20, 0.04)]})
    rows += _front_rows("b", {"ce": [(5 * 2**20, 0.05)], "bce": [(7 * 2**20, 0.01)]})
    figure = fronts_figure(pareto_fronts(configurations(by_setting(results_frame(rows)))))
    colours: dict[str, set] = {}
    for ax in figure.axes:
        for line in ax.get_lines():
            if not line.get_label().startswith("_"):
                colours.setdefault(line.get_label(), set()).add(matplotlib.colors.to_hex(line.get_color()))
    assert all(len(found) == 1 for found in colours.values()), colours  # ce: one colour on a and on b
    assert len({next(iter(c)) for c in colours.values()}) == 3  # and three losses, three colours
    for memory_ax in figure.axes[::2]:
        xs = [x for line in memory_ax.get_lines() for x in line.get_xdata()]
        left, right = memory_ax.get_xlim()
        assert left < min(xs) and right >= max(xs)


def test_the_plot_draws_each_training_setting_apart():
    from rece_bench.report.plot import by_setting
    from rece_bench.report.tables import results_frame

    rows = _front_rows("a", {"rece": [(3 * 2**20, 0.02)]}, epochs=3) + _front_rows("a", {"ce": [(9, 0.04)]}, epochs=1)
    shown = by_setting(results_frame(rows))
    assert sorted(shown["dataset"].unique()) == ["a [epochs 1]", "a [epochs 3]"]


def test_cpu_memory_falls_back_to_peak_rss_where_torch_has_no_mem_tracker(monkeypatch):
    """torch's MemTracker is private: one function imports it; without it a window is still measured."""
    import builtins

    import torch

    from rece_bench import memory

    real_import = builtins.__import__

    def no_mem_tracker(name, *args, **kwargs):
        if name == "torch.distributed._tools.mem_tracker":
            raise ImportError("no module named mem_tracker")
        return real_import(name, *args, **kwargs)

    assert memory.cpu_tensor_tracker() is not None  # this torch has it
    monkeypatch.setattr(builtins, "__import__", no_mem_tracker)
    assert memory.cpu_tensor_tracker() is None
    with memory.PeakMemory("cpu") as meter:
        block = torch.ones(8_000_000)  # 32 MB, touched
        assert meter.current_peak_bytes() >= meter.start_bytes > 0
    del block
    stats = meter.stats
    assert stats.method == memory.RSS_METHOD and stats.peak_bytes >= stats.start_bytes > 0


def test_ids_that_are_not_utf8_are_never_merged(tmp_path):
    """Two users whose ids differ only in bytes that are no UTF-8 became one (both U+FFFD) before."""
    from rece_bench.data.parse import parse_gowalla
    from rece_bench.errors import UserError

    good = [f"u{u}\t2010-10-{10 + i:02d}T00:00:00Z\t0\t0\tloc{i}\n".encode() for u in range(3) for i in range(4)]
    bad = [b"u\xff\t2010-10-20T00:00:00Z\t0\t0\tloc1\n", b"u\xfe\t2010-10-21T00:00:00Z\t0\t0\tloc2\n"]
    path = tmp_path / "checkins.txt"
    path.write_bytes(b"".join(good + bad))
    parsed = parse_gowalla(path)
    assert parsed.malformed_lines == 2 and "not UTF-8" in parsed.first_malformed
    assert not any("\ufffd" in user for user in parsed.users) and len(parsed.users) == 3
    with pytest.raises(UserError, match=r"line 13: user b'u\\xff' is not UTF-8 text"):
        parse_gowalla(path, strict=True)
