"""One feature store shared by concurrent cells: holds keep what another cell still needs,
writes stay atomic, and a store that cannot be written says so (issue 18, item 5)."""

import errno
import json
import multiprocessing
import pickle
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

import asvp.features.store as store_module
from asvp.checkpoint import STATE_FILE, RoundCheckpoint
from asvp.features import FeatureStore, FeatureStoreError, Holder
from asvp.pipelines import run_cell

KEY = {"kind": "asvp_update", "cell": "c" * 64, "version": 1, "labeled": "l"}
CPU = torch.device("cpu")


def _features(value=1.0):
    return torch.full((8, 4), value)


def _run_holder(tmp_path, name):
    """A run's holder whose round checkpoint exists (the run can resume)."""
    checkpoint = RoundCheckpoint(tmp_path / "checkpoints" / name, identity=name)
    checkpoint.write({"rounds": []})
    return Holder.for_run(name, checkpoint.directory / STATE_FILE)


def test_an_entry_held_by_another_cell_outlives_the_first_cells_release(tmp_path):
    first = FeatureStore(tmp_path / "store", _run_holder(tmp_path, "grid-a-run"))
    second = FeatureStore(tmp_path / "store", _run_holder(tmp_path, "grid-b-run"))
    first.hold(KEY)
    assert not first.get_or_extract(KEY, _features, CPU).from_cache
    second.hold(KEY)
    assert second.get_or_extract(KEY, lambda: _features(2.0), CPU).from_cache  # first's entry
    assert [h.name for h in first.holders(KEY)] == ["grid-a-run", "grid-b-run"]

    assert not first.release(KEY)  # the first cell ends: the second still holds it
    kept = second.get(KEY)
    assert kept is not None and np.array_equal(kept.features, _features().half().numpy())
    assert [h.name for h in second.holders(KEY)] == ["grid-b-run"]
    assert second.release(KEY)  # the last holder's release removes it
    assert second.get(KEY) is None
    assert not list((tmp_path / "store").glob("*.hold.*"))


def test_a_hold_taken_before_the_entry_exists_keeps_it_from_an_ending_cell(tmp_path):
    """The order of a cell's update: hold, then read or extract. A release between the two
    finds the hold and leaves the entry."""
    ending = FeatureStore(tmp_path / "store", _run_holder(tmp_path, "ending"))
    starting = FeatureStore(tmp_path / "store", _run_holder(tmp_path, "starting"))
    ending.hold(KEY)
    ending.get_or_extract(KEY, _features, CPU)
    starting.hold(KEY)
    assert not ending.release(KEY)
    assert starting.get_or_extract(KEY, lambda: _features(2.0), CPU).from_cache


def _hold_and_exit(root, key, run_id, checkpoint):
    holder = Holder.for_run(run_id, checkpoint) if run_id else None
    FeatureStore(root, holder).hold(key)


def _in_another_process(*args):
    process = multiprocessing.get_context("spawn").Process(target=_hold_and_exit, args=args)
    process.start()
    process.join(120)
    assert process.exitcode == 0


def test_the_hold_of_a_dead_process_is_stale(tmp_path):
    store = FeatureStore(tmp_path / "store")
    store.get_or_extract(KEY, _features, CPU)
    _in_another_process(tmp_path / "store", KEY, None, None)
    assert len(list((tmp_path / "store").glob("*.hold.*"))) == 1
    assert store.holders(KEY) == []  # that process is gone
    assert store.release(KEY)
    assert store.get(KEY) is None


def test_a_dead_runs_hold_lasts_while_its_checkpoint_can_resume_it(tmp_path):
    """A preempted cell (its process gone, its round checkpoint kept) still needs its
    entries; once the checkpoint is cleared, or holds another run's state, it does not."""
    holder = _run_holder(tmp_path, "preempted")
    store = FeatureStore(tmp_path / "store")
    store.get_or_extract(KEY, _features, CPU)
    _in_another_process(tmp_path / "store", KEY, "preempted", holder.checkpoint)
    assert not store.release(KEY)
    assert store.get(KEY) is not None
    RoundCheckpoint(tmp_path / "checkpoints" / "preempted", identity="fresh-run").write({})
    assert store.release(KEY)


def test_a_hold_from_another_host_counts_as_live(tmp_path):
    store = FeatureStore(tmp_path / "store")
    store.get_or_extract(KEY, _features, CPU)
    elsewhere = FeatureStore(
        tmp_path / "store", Holder("remote-run", f"not-{socket.gethostname()}", 1, "1")
    )
    elsewhere.hold(KEY)
    assert not store.release(KEY)
    assert [h.name for h in store.holders(KEY)] == ["remote-run"]


WRITER = """
import sys, time, torch
from pathlib import Path
from asvp.features import FeatureStore
root, marker = sys.argv[1], Path(sys.argv[2])
def extract():
    with marker.open("a") as out:
        out.write("x")
    time.sleep(1.0)
    return torch.arange(32.0).reshape(8, 4)
key = {"kind": "asvp_update", "cell": "shared", "version": 1, "labeled": "l"}
stored = FeatureStore(root).get_or_extract(key, extract, torch.device("cpu"))
print(float(stored.features.astype("float64").sum()))
"""


def test_two_processes_writing_the_same_entry_leave_one_valid_entry(tmp_path):
    marker = tmp_path / "extractions"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path / "store"), str(marker)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [writer.communicate(timeout=120)[0].strip() for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0]
    assert outputs == [str(float(sum(range(32))))] * 2
    assert marker.read_text() == "x", "extracted once, read by the other"
    entries = [p for p in (tmp_path / "store").iterdir() if p.is_dir()]
    assert len(entries) == 1 and not list((tmp_path / "store").glob(".staging-*"))
    manifest = json.loads((entries[0] / "manifest.json").read_text())
    assert manifest["bytes"] == (entries[0] / "features.npy").stat().st_size


# -- a store that cannot be written -----------------------------------------------------------


def _failing(code):
    def fail(path, *args, **kwargs):
        raise OSError(code, errno.errorcode[code] + " (simulated)", str(path))

    return fail


def test_a_full_store_names_itself_and_leaves_no_partial_entry(tmp_path, monkeypatch):
    store = FeatureStore(tmp_path / "store")
    monkeypatch.setattr(store_module.np, "save", _failing(errno.ENOSPC))
    with pytest.raises(FeatureStoreError) as raised:
        store.get_or_extract(KEY, _features, CPU)
    message = str(raised.value)
    assert f"feature store {tmp_path / 'store'} is on a full disk" in message
    assert "free space there" in message and "run the grid again" in message
    assert raised.value.errno == errno.ENOSPC
    assert not [p for p in (tmp_path / "store").iterdir() if p.is_dir()], "no staging left"


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_a_read_only_store_is_read_and_refuses_writes_by_name(tmp_path, monkeypatch, code):
    """Tests may run as root, where permissions do not stop writes: the operating system's
    refusal is simulated where the store opens files for writing."""
    store = FeatureStore(tmp_path / "store")
    store.get_or_extract(KEY, _features, CPU)
    monkeypatch.setattr(store_module, "open", _failing(code), raising=False)
    read = store.get_or_extract(KEY, lambda: _features(2.0), CPU)
    assert read.from_cache and np.array_equal(read.features, _features().half().numpy())
    assert store.get(KEY) is not None
    other = {**KEY, "version": 2}
    assert store.get(other) is None
    with pytest.raises(FeatureStoreError) as raised:
        store.get_or_extract(other, _features, CPU)
    assert f"feature store {tmp_path / 'store'} is not writable" in str(raised.value)
    assert "point the grid's feature_store at a writable folder" in str(raised.value)
    with pytest.raises(FeatureStoreError, match="is not writable"):
        store.hold(other)


def test_a_store_path_that_is_a_file_is_named(tmp_path):
    (tmp_path / "store").write_text("not a folder")
    with pytest.raises(FeatureStoreError, match=f"feature store {tmp_path / 'store'} is not a "):
        FeatureStore(tmp_path / "store").get_or_extract(KEY, _features, CPU)


# -- whole cells ------------------------------------------------------------------------------


def _asvp_cell(tiny_cell):
    config = tiny_cell("asvp", train_method="auto", rule="every")
    return type(config)(**{**config.__dict__, "budgets": (10, 20, 30, 40)})


def _summary(result):
    return result.labeled_order, [(r.test_acc, r.feature_version) for r in result.rounds]


class Stopped(BaseException):
    """Stands for a preemption: nothing may catch it."""


def _stop_after(round_index):
    def on_round(record):
        if record.round == round_index:
            raise Stopped

    return on_round


def test_an_identical_cell_ending_leaves_a_preempted_cell_its_features(tiny_cell, tmp_path):
    """The issue's case: grid A's cell is preempted after round 1, grid B's identical cell
    runs to the end and releases the shared entries; A then resumes after round 1, not from
    round 0, and ends as B did; the last release removes every re-extraction."""
    config = _asvp_cell(tiny_cell)
    root = tmp_path / "store"
    a_checkpoint = RoundCheckpoint(tmp_path / "a", identity="run-a")
    a_store = FeatureStore(root, Holder.for_run("run-a", a_checkpoint.directory / STATE_FILE))
    with pytest.raises(Stopped):
        run_cell(config, a_store, on_round=_stop_after(1), checkpoint=a_checkpoint)
    b_checkpoint = RoundCheckpoint(tmp_path / "b", identity="run-b")
    b_store = FeatureStore(root, Holder.for_run("run-b", b_checkpoint.directory / STATE_FILE))
    b_result = run_cell(config, b_store, checkpoint=b_checkpoint)
    assert len([p for p in root.iterdir() if p.is_dir()]) > 1, "A's entries kept"

    resumed = run_cell(config, a_store, checkpoint=RoundCheckpoint(tmp_path / "a", "run-a"))
    assert resumed.resumed_rounds == 2
    assert _summary(resumed) == _summary(b_result)
    assert len([p for p in root.iterdir() if p.is_dir()]) == 1, "only the pre-trained entry"


CELL = """
import json, pickle, sys
from pathlib import Path
from asvp.checkpoint import STATE_FILE, RoundCheckpoint
from asvp.features import FeatureStore, Holder
from asvp.pipelines import run_cell
config = pickle.loads(Path(sys.argv[3]).read_bytes())
run_id = Path(sys.argv[2]).name
checkpoint = RoundCheckpoint(sys.argv[2], identity=run_id)
store = FeatureStore(sys.argv[1], Holder.for_run(run_id, checkpoint.directory / STATE_FILE))
result = run_cell(config, store, checkpoint=checkpoint)
print(json.dumps([result.labeled_order, [r.test_acc for r in result.rounds]]))
"""


def test_two_identical_cells_run_at_once_on_one_store(tiny_cell, tmp_path):
    """Two processes, each an identical ASVP cell of its own grid, share the store: both end
    with the same result, and their re-extractions are gone once both have released them."""
    config = tmp_path / "config.pickle"
    config.write_bytes(pickle.dumps(tiny_cell("asvp", train_method="auto", rule="every")))
    cells = [
        subprocess.Popen(
            [sys.executable, "-c", CELL, str(tmp_path / "store"), str(tmp_path / name), config],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("grid-a", "grid-b")
    ]
    outputs = [cell.communicate(timeout=300) for cell in cells]
    assert [cell.returncode for cell in cells] == [0, 0], [err[-2000:] for _, err in outputs]
    first, second = (json.loads(out.strip().splitlines()[-1]) for out, _ in outputs)
    assert first == second
    assert len([p for p in (tmp_path / "store").iterdir() if p.is_dir()]) == 1
    assert not list((tmp_path / "store").glob("*.hold.*"))


def test_a_cell_stopped_by_a_full_store_fails_its_run_by_name_and_resumes(tmp_path, monkeypatch):
    """The run ends failed with the store's message, the finished round stays in the round
    checkpoint, and once there is room the next ``run`` resumes after it."""
    from launching import checkpointed_rounds, runs_of, write_grid

    from benchmark.cli import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    grid = write_grid(tmp_path, "full")
    save, saves = np.save, []

    def first_save_only(*args, **kwargs):  # the pre-trained entry; ASVP's update finds no room
        saves.append(args[0])
        if len(saves) > 1:
            _failing(errno.ENOSPC)(args[0])
        save(*args, **kwargs)

    monkeypatch.setattr(store_module.np, "save", first_save_only)
    assert main(["run", str(grid), "--executor", "debug", "--tracking-uri", uri]) != 0
    runs = runs_of(uri, "full")
    failed = runs.loc[runs["tags.state"] == "failed"]
    assert list(failed["status"]) == ["FAILED"]
    (error,) = failed["tags.error"]
    assert f"feature store {tmp_path / 'features'} is on a full disk" in error
    assert checkpointed_rounds(tmp_path / "state") == [1]

    monkeypatch.setattr(store_module.np, "save", save)
    assert main(["run", str(grid), "--executor", "debug", "--tracking-uri", uri]) == 0
    runs = runs_of(uri, "full")
    assert set(runs["tags.state"]) == {"finished"}
    resumed = runs.loc[runs["run_id"] == failed["run_id"].iloc[0]]
    assert list(resumed["tags.resumed_rounds"]) == ["1"]
