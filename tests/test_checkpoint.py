"""Round checkpoints: a cell stopped after any round continues to the uninterrupted result."""

import json

import pytest

from asvp.checkpoint import CellState, RoundCheckpoint, RoundLog
from asvp.features import FeatureStore
from asvp.pipelines import run_cell


class Killed(BaseException):
    """Stands for SIGKILL/preemption: not an ``Exception``, so nothing may catch it."""


@pytest.fixture
def store(tmp_path):
    return FeatureStore(tmp_path / "features")


def _summary(result):
    return (
        result.labeled_order,
        [
            (r.labels, r.test_acc, r.selected, r.train_method, r.feature_version)
            for r in result.rounds
        ],
        [repr(r.indicator) for r in result.rounds],  # repr: NaN values compare equal
    )


def _killed_after(round_index):
    def on_round(record):
        if record.round == round_index:
            raise Killed

    return on_round


CELLS = {
    "standard": ("standard", "margin", "ft", {}),
    "svpp-badge": ("svpp", "badge", "lpft", {}),
    # the indicator's subsets (its random generator) and the re-extracted features are state
    "asvp-logme": ("asvp", "margin", "auto", {"rule": "logme", "threshold": 1000.0}),
    "asvp-every": ("asvp", "margin", "auto", {"rule": "every"}),
}


@pytest.mark.parametrize(
    "name, stop_after",
    [("standard", 1), ("svpp-badge", 0), ("asvp-logme", 1), ("asvp-every", 0), ("asvp-every", 2)],
)
def test_a_stopped_cell_resumes_to_the_uninterrupted_result(
    tiny_cell, store, tmp_path, name, stop_after
):
    pipeline, strategy, method, trigger = CELLS[name]
    config = tiny_cell(pipeline, strategy=strategy, train_method=method, **trigger)
    config = type(config)(**{**config.__dict__, "budgets": (10, 20, 30, 40)})
    uninterrupted = run_cell(config, store)
    checkpoint = RoundCheckpoint(tmp_path / "ckpt", "cell")
    with pytest.raises(Killed):
        run_cell(config, store, on_round=_killed_after(stop_after), checkpoint=checkpoint)
    if name == "asvp-every":  # one update per round so far, each an entry of the store
        state = json.loads((tmp_path / "ckpt" / "state.json").read_text())
        keys = state["state"]["update_keys"]
        assert [key["version"] for key in keys] == list(range(1, stop_after + 2))
        assert all(store.get(key) is not None for key in keys)
    delivered = []
    resumed = run_cell(
        config,
        store,
        on_round=delivered.append,
        checkpoint=RoundCheckpoint(tmp_path / "ckpt", "cell"),
    )
    assert resumed.resumed_rounds == stop_after + 1
    assert _summary(resumed) == _summary(uninterrupted)
    # the round whose hand-over was interrupted is handed over again, then the rest
    assert [r.round for r in delivered] == list(range(stop_after, 4))


def test_rounds_that_cannot_be_recorded_are_queued_and_handed_over_in_order(
    tiny_cell, store, tmp_path
):
    config = tiny_cell("svpp")
    attempts, delivered = [], []

    def flaky(record):
        attempts.append(record.round)
        if record.round == 1 and attempts.count(1) == 1:
            raise ConnectionError("tracking server down")
        delivered.append(record.round)

    result = run_cell(
        config, store, on_round=flaky, checkpoint=RoundCheckpoint(tmp_path / "c", "x")
    )
    assert attempts == [0, 1, 1, 2]
    assert delivered == [0, 1, 2]
    assert _summary(result) == _summary(run_cell(config, store))


def test_a_cell_that_cannot_record_its_rounds_fails_and_a_rerun_only_records_them(
    tiny_cell, store, tmp_path
):
    config = tiny_cell("svpp")

    def down(record):
        if record.round >= 1:
            raise ConnectionError("tracking server down")

    with pytest.raises(ConnectionError):
        run_cell(config, store, on_round=down, checkpoint=RoundCheckpoint(tmp_path / "c", "x"))
    delivered = []
    result = run_cell(
        config, store, on_round=delivered.append, checkpoint=RoundCheckpoint(tmp_path / "c", "x")
    )
    assert result.resumed_rounds == 3  # nothing recomputed
    assert [r.round for r in delivered] == [1, 2]
    assert _summary(result) == _summary(run_cell(config, store))


def test_a_checkpoint_whose_features_are_corrupt_is_ignored_not_used(
    tiny_cell, store, tmp_path, capsys
):
    config = tiny_cell("asvp", train_method="auto", rule="every")
    directory = tmp_path / "c"
    with pytest.raises(Killed):
        run_cell(
            config, store, on_round=_killed_after(1), checkpoint=RoundCheckpoint(directory, "x")
        )
    keys = json.loads((directory / "state.json").read_text())["state"]["update_keys"]
    entry = _entry_of(store, keys[-1])
    array = entry / "features.npy"
    array.write_bytes(array.read_bytes()[:-64])  # truncated
    result = run_cell(config, store, checkpoint=RoundCheckpoint(directory, "x"))
    assert result.resumed_rounds == 0
    assert "entries of its updated features are gone" in capsys.readouterr().err
    assert _summary(result) == _summary(run_cell(config, store))


def _entry_of(store, key):
    for manifest in store.root.glob("*/manifest.json"):
        if json.loads(manifest.read_text())["key"] == key:
            return manifest.parent
    raise AssertionError(f"no entry for {key}")


def test_an_unreadable_state_is_ignored_not_used(tiny_cell, store, tmp_path, capsys):
    config = tiny_cell("svpp")
    directory = tmp_path / "c"
    with pytest.raises(Killed):
        run_cell(
            config, store, on_round=_killed_after(1), checkpoint=RoundCheckpoint(directory, "x")
        )
    state = directory / "state.json"
    state.write_text(state.read_text()[:-10])
    result = run_cell(config, store, checkpoint=RoundCheckpoint(directory, "x"))
    assert result.resumed_rounds == 0
    assert "unreadable" in capsys.readouterr().err
    assert _summary(result) == _summary(run_cell(config, store))


def test_another_cells_checkpoint_is_refused(tiny_cell, store, tmp_path):
    config = tiny_cell("svpp")
    with pytest.raises(Killed):
        run_cell(
            config, store, on_round=_killed_after(0), checkpoint=RoundCheckpoint(tmp_path, "a")
        )
    with pytest.raises(ValueError, match="belongs to 'a'"):
        run_cell(config, store, checkpoint=RoundCheckpoint(tmp_path, "b"))


def test_the_state_file_is_replaced_atomically(tmp_path):
    checkpoint = RoundCheckpoint(tmp_path, "x")
    checkpoint.write({"round": 0})
    checkpoint.write({"round": 1})
    assert RoundCheckpoint(tmp_path, "x").read() == {"round": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_the_round_log_saves_the_format_2_state_and_hands_rounds_over_once(tmp_path):
    state = CellState(update_keys=[], rounds=[{"round": 0}], labeled_order=[3, 1], rule=None,
                      feature_version=0)  # fmt: skip
    delivered = []
    log = RoundLog(RoundCheckpoint(tmp_path, "x"), delivered.append, lambda: state)
    log.deliver(["r0", "r1"])
    log.deliver(["r0", "r1"], final=True)
    assert delivered == ["r0", "r1"]
    saved = json.loads((tmp_path / "state.json").read_text())
    assert (saved["format"], saved["identity"]) == (2, "x")
    assert list(saved["state"]) == [
        "update_keys", "rounds", "labeled_order", "rule", "feature_version", "delivered"
    ]  # fmt: skip
    assert saved["state"]["delivered"] == 2
    restored = RoundLog(RoundCheckpoint(tmp_path, "x"), delivered.append, lambda: state)
    assert restored.restore(lambda saved_state: True) == state
    assert restored.delivered == 2
