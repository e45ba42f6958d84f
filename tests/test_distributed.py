"""minidl.distributed: N processes under ``mpiexec`` train as one process does.

The data-parallel trainings run under ``mpiexec -n 2`` (the launcher of the ``mpich`` wheel,
in the ``mpi`` extra), each launch a subprocess ended if it outlives LAUNCH_SECONDS; the
one-process trainings they are compared with run in this process. Both are in
tests/distributed_support.py. Also here: how a batch is shared out, the losses' shard
fractions (what makes the shares' gradients sum to the batch's), docs/distributed.md's
examples, ``mpiexec -n 2 python -m minidl train``, and processes that fail.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import distributed_support as support
import numpy as np
import pytest

import minidl
from minidl import losses
from minidl.cli import main as cli_main
from minidl.distributed import DataParallel, launched_processes, share_bounds

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs" / "distributed.md"
LAUNCH_SECONDS = 120
# after a process fails, the others must be gone within this many seconds
FAULT_SECONDS = 5.0


def mpiexec(*command: str, cwd: Path, flags: tuple[str, ...] = ("-n", "2")
            ) -> subprocess.CompletedProcess:
    """``mpiexec FLAGS python -W error COMMAND`` with one BLAS thread per process; the whole
    process group is killed if it hangs."""
    launcher = Path(sys.executable).with_name("mpiexec")  # the mpich wheel's, beside python
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    process = subprocess.Popen([str(launcher), *flags, sys.executable, "-W", "error",
                                *command], cwd=cwd, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=LAUNCH_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"mpiexec {' '.join(command)} hung for {LAUNCH_SECONDS} s:\n{stderr}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def assert_close(actual: np.ndarray, expected: np.ndarray, relative: float) -> None:
    """Every element within ``relative`` × the largest magnitude of ``expected``."""
    scale = max(float(np.max(np.abs(expected))), 1e-300)
    assert np.max(np.abs(actual - expected)) <= relative * scale, (actual, expected)


def weights(path: Path) -> list[np.ndarray]:
    with np.load(path.with_suffix(".npz")) as arrays:
        return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]


# ---------------------------------------------------------------------------- no MPI needed

def test_launched_processes_reads_the_launchers_environment():
    assert launched_processes({}) == 1
    assert launched_processes({"PMI_SIZE": "4", "PMI_RANK": "1"}) == 4  # MPICH's hydra
    assert launched_processes({"OMPI_COMM_WORLD_SIZE": "3"}) == 3  # Open MPI
    assert launched_processes({"PMI_SIZE": ""}) == 1


@pytest.mark.parametrize("rows", [1, 2, 7, 17, 64])
@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_shares_are_contiguous_cover_the_batch_and_differ_by_at_most_one_row(rows, size):
    bounds = [share_bounds(rows, size, rank) for rank in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == rows
    assert all(stop == start for (_, stop), (start, _) in itertools.pairwise(bounds))
    counts = [stop - start for start, stop in bounds]
    assert max(counts) - min(counts) <= 1 and counts == sorted(counts, reverse=True)
    assert counts[0] >= 1  # rank 0 always holds the batch's first row


# each loss with the kind of target it takes: class indices, one-hot rows, 0/1, ±1, numbers
LOSSES = [
    (losses.CrossEntropy(), "labels"), (losses.BinaryCrossEntropy(), "binary"),
    (losses.SparseCategoricalCrossentropy(from_logits=True), "labels"),
    (losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum"), "labels"),
    (losses.SparseCategoricalCrossentropy(from_logits=True,
                                          reduction="mean_with_sample_weight"), "labels"),
    (losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=1), "labels"),
    (losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=1,
                                          reduction="mean_with_sample_weight"), "labels"),
    (losses.CategoricalCrossentropy(from_logits=True), "one_hot"),
    (losses.MeanSquaredError(), "numbers"), (losses.MeanAbsoluteError(reduction="sum"), "numbers"),
    (losses.Huber(), "numbers"), (losses.Hinge(), "signs"),
]


def _loss_id(case: tuple[losses.Loss, str]) -> str:
    loss, _ = case
    ignored = getattr(loss, "ignore_class", None)
    return "-".join([type(loss).__name__, getattr(loss, "reduction", "mean")]
                    + ([f"ignore_class={ignored}"] if ignored is not None else []))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("case", LOSSES, ids=_loss_id)
def test_shard_fractions_make_the_shards_losses_and_gradients_the_batchs(case, weighted):
    """Σ_r c_r L(share r) = L(batch), and likewise the gradients, for shares of 4 and 5
    rows: what data-parallel training relies on (Loss.shard_fraction)."""
    loss, kind = case
    rng = np.random.default_rng(0)
    pred = rng.standard_normal((9, 3))
    labels = rng.integers(0, 3, 9)
    target = {"labels": labels, "one_hot": np.eye(3)[labels],
              "binary": (pred > 0.3).astype(float), "signs": np.where(pred > 0, 1.0, -1.0),
              "numbers": rng.standard_normal((9, 3))}[kind]
    sample_weight = rng.uniform(0.1, 2.0, 9) if weighted else None

    def weighed(rows: slice) -> dict:
        return {} if sample_weight is None else {"sample_weight": sample_weight[rows]}

    whole = loss(pred, target, **weighed(slice(None)))
    whole_grad = loss.backward()
    total, grad = 0.0, np.zeros_like(pred)
    for rows in (slice(0, 4), slice(4, 9)):
        fraction = loss.shard_fraction(target[rows], target,
                                       weighed(rows).get("sample_weight"), sample_weight)
        total += fraction * loss(pred[rows], target[rows], **weighed(rows))
        grad[rows] = fraction * loss.backward()
    np.testing.assert_allclose(total, whole, rtol=1e-12)
    np.testing.assert_allclose(grad, whole_grad, rtol=1e-12, atol=1e-15)


def docs_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(), re.S)


def test_docs_show_numerically_that_shard_gradients_sum_to_the_batch_gradient():
    teaching = [block for block in docs_blocks("python") if "DataParallel" not in block]
    assert teaching, "docs/distributed.md has no example without MPI"
    for block in teaching:
        exec(compile(block, str(DOCS), "exec"), {})  # each block asserts what it shows


def test_without_mpi4py_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # what an import finds missing
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'minidl\[mpi\]'"):
        DataParallel()


def test_minidl_train_imports_mpi4py_only_under_mpiexec():
    code = ("import sys, minidl.cli, minidl.distributed; "
            "print(sorted(m for m in sys.modules if m.startswith('mpi4py')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={k: v for k, v in os.environ.items()
                                           if k not in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")})
    assert done.stdout.strip() == "[]"


# ---------------------------------------------------------------------------- two processes

@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Every training of distributed_support.run_all, under mpiexec -n 2; resuming from a
    backup that one process left when it was interrupted at the start of epoch 3."""
    folder = tmp_path_factory.mktemp("mpi")
    with pytest.raises(support.Interrupted):
        support.train_resumed(folder / "backup", fail_at=2)
    assert (folder / "backup" / "latest.npz").exists()
    done = mpiexec(str(ROOT / "tests" / "distributed_support.py"), "train", str(folder),
                   cwd=folder)
    assert done.returncode == 0, done.stderr
    return folder


@pytest.mark.parametrize("name, train, relative", [
    ("mlp_float64", lambda: support.train_mlp("float64"), 1e-9),
    ("mlp_float32", lambda: support.train_mlp("float32"), 1e-4),
    ("cnn", support.train_cnn, 1e-9)])
def test_two_processes_end_with_the_weights_and_logs_of_one(two_processes, name, train,
                                                           relative):
    """Shuffled batches of 17 rows shared 9 + 8, a last batch of 1 row (one process gets
    none), Dropout, BatchNormalization, sample weights, an L2 penalty, metrics (AUC
    included) and validation, for 4 epochs: as in one process, to float64's 1e-9 and
    float32's 1e-4 relative; both processes bit for bit alike."""
    model, history = train()
    rank0, rank1 = (two_processes / f"rank{rank}" / name for rank in (0, 1))
    for ours, theirs, expected in zip(weights(rank0), weights(rank1), model.get_weights(),
                                      strict=True):
        np.testing.assert_array_equal(ours, theirs)
        assert_close(ours, expected, relative)
    logs = json.loads(rank0.with_suffix(".json").read_text())
    assert logs == json.loads(rank1.with_suffix(".json").read_text())
    assert set(logs) == set(history)
    for key, values in history.items():
        assert_close(np.array(logs[key]), np.array(values), 10 * relative)


def test_early_stopping_stops_both_processes_at_one_process_epoch(two_processes, tmp_path):
    expected = support.train_until_early_stop(tmp_path)
    assert 0 < expected[0] < 29  # it did stop early
    for rank in (0, 1):
        result = json.loads((two_processes / f"rank{rank}" / "early_stopping.json").read_text())
        assert tuple(result) == expected


def test_only_rank_0_writes_files(two_processes):
    """Each rank's CSVLogger and ModelCheckpoint name a folder of its own: only rank 0's
    get files, one row and one checkpoint per epoch."""
    _, epochs = json.loads((two_processes / "rank0" / "early_stopping.json").read_text())
    written = two_processes / "rank0" / "files"
    assert (written / "log.csv").read_text().count("\n") == epochs + 1
    assert sorted(p.name for p in (written / "ckpt").iterdir()) == sorted(
        f"e{epoch}.npz" for epoch in range(1, epochs + 1))
    assert list((two_processes / "rank1" / "files").iterdir()) == []


def test_every_process_resumes_from_rank_0s_backup(two_processes, tmp_path):
    """BackupAndRestore runs on rank 0 only; rank 0's weights, optimizer state, random
    generators and epoch then become rank 1's: the resumed run ends where an uninterrupted
    one-process run does."""
    expected = support.train_resumed(tmp_path / "backup").get_weights()
    for rank in (0, 1):
        for ours, theirs in zip(weights(two_processes / f"rank{rank}" / "resumed"), expected,
                                strict=True):
            assert_close(ours, theirs, 1e-9)
    assert not (two_processes / "backup").exists()  # deleted when training was done


def docs_commands() -> list[tuple[tuple[str, ...], list[str]]]:
    """``(mpiexec's flags, python's arguments)`` of each mpiexec command of the docs."""
    commands = []
    for block in docs_blocks("bash"):
        for line in block.splitlines():
            words = line.partition("#")[0].split()
            if words[:1] == ["mpiexec"]:
                python = words.index("python")
                commands.append((tuple(words[1:python]), words[python + 1:]))
    return commands


def test_mpiexec_minidl_train_saves_the_model_one_process_saves(tmp_path, monkeypatch,
                                                               capsys):
    """docs/distributed.md's config and command, against ``minidl train`` in this process:
    the same printed scores and the same saved model."""
    (config,) = docs_blocks("json")
    (flags, command), _ = docs_commands()
    assert flags == ("-n", "2") and command == ["-m", "minidl", "train", "train.json"]
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):
        folder.mkdir()
        (folder / "train.json").write_text(config)
    monkeypatch.chdir(one)
    assert cli_main(["train", "train.json"]) == 0
    printed = capsys.readouterr().out
    done = mpiexec(*command, cwd=two)
    assert done.returncode == 0, done.stderr
    assert _without_digits(done.stdout) == _without_digits(printed)
    scores = json.loads(re.search(r"\{.*\}", done.stdout, re.S).group())
    for key, value in json.loads(re.search(r"\{.*\}", printed, re.S).group()).items():
        assert scores[key] == pytest.approx(value, rel=1e-9)
    output = json.loads(config)["output"]
    ours, theirs = minidl.load_model(two / output), minidl.load_model(one / output)
    for actual, expected in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        assert_close(actual, expected, 1e-9)
    assert done.stderr.count("Epoch 1/") == 1  # one progress line per epoch, rank 0's


def _without_digits(text: str) -> str:
    return re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?", "#", text)


def test_docs_host_file_command_runs_here(tmp_path):
    """The several-machines command, with a host file of this machine only."""
    (text,) = re.findall(r"```text\n(.*?)```", DOCS.read_text(), re.S)
    assert all(re.fullmatch(r"[\w.-]+:\d+", line) for line in text.split())
    _, (flags, command) = docs_commands()
    assert flags[:2] == ("-f", "hosts")
    (tmp_path / "hosts").write_text("localhost:2\n")
    (tmp_path / "train.json").write_text(docs_blocks("json")[0])
    done = mpiexec(*command, "--epochs", "1", cwd=tmp_path, flags=("-f", "hosts", "-n", "2"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "model.npz").exists()


def test_docs_script_runs_under_mpiexec(tmp_path):
    (script,) = [block for block in docs_blocks("python") if "DataParallel" in block]
    (tmp_path / "train.py").write_text(script)
    done = mpiexec("train.py", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert minidl.load_model(tmp_path / "model.npz").built


# ---------------------------------------------------------------------------- faults

@pytest.fixture
def previous_model(tmp_path):
    """A model.npz from an earlier run, which a failed run must leave as it was."""
    support.mlp("float64").save(tmp_path / "model.npz")
    return (tmp_path / "model.npz").read_bytes()


def _seconds_after_failure(stderr: str, ended: float) -> float:
    failed_at = float(re.search(r"failing at ([\d.]+)", stderr).group(1))
    return ended - failed_at


def _assert_nothing_half_written(folder: Path, previous_model: bytes) -> None:
    assert (folder / "model.npz").read_bytes() == previous_model
    checkpoints = sorted(p.name for p in (folder / "ckpt").iterdir())
    assert checkpoints == [f"e{epoch}.npz" for epoch in range(1, support.FAILING_EPOCH + 1)]
    for name in checkpoints:
        assert minidl.load_model(folder / "ckpt" / name).epoch == int(name[1:-4])
    assert not list(folder.rglob("*.tmp"))


def test_an_error_in_one_process_ends_all_of_them_naming_its_rank(tmp_path, previous_model):
    done = mpiexec(str(ROOT / "tests" / "distributed_support.py"), "raise", str(tmp_path),
                   cwd=tmp_path)
    ended = time.time()
    assert done.returncode != 0
    assert ("minidl.distributed: rank 1 of 2 failed: RuntimeError: injected failure at "
            "epoch 3") in done.stderr
    assert _seconds_after_failure(done.stderr, ended) < FAULT_SECONDS
    _assert_nothing_half_written(tmp_path, previous_model)


def test_processes_given_other_data_refuse_to_train(tmp_path):
    done = mpiexec(str(ROOT / "tests" / "distributed_support.py"), "mismatch", str(tmp_path),
                   cwd=tmp_path)
    assert done.returncode != 0
    assert re.search(r"minidl\.distributed: rank \d of 2 failed: ValueError: DataParallel: "
                     r"every process must call fit with the same data and arguments .*"
                     r"rank 0: 214 rows .*; rank 1: 213 rows", done.stderr), done.stderr


def test_a_killed_process_ends_the_others_and_its_pid_names_its_rank(tmp_path,
                                                                    previous_model):
    done = mpiexec(str(ROOT / "tests" / "distributed_support.py"), "kill", str(tmp_path),
                   cwd=tmp_path)
    ended = time.time()
    assert done.returncode != 0
    assert _seconds_after_failure(done.stderr, ended) < FAULT_SECONDS
    # rank 0's line says which pid is rank 1; mpiexec names the pid it saw killed
    pid = re.search(r"rank 1 = pid (\d+)", done.stderr).group(1)
    assert f"PID {pid} " in done.stdout and "signal 9" in done.stdout, done.stdout
    _assert_nothing_half_written(tmp_path, previous_model)
