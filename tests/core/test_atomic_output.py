"""Outputs appear complete or not at all, with the user's umask; errors end as one line (issue 17 items 2, 3, 5)."""

from __future__ import annotations

import io
import os
import signal
import stat
from pathlib import Path

import pytest

from nnunet_babloss.core.atomic_output import AtomicFileSet, AtomicFolder, Terminated
from nnunet_babloss.command_line import TRACEBACK_ENV_VAR, run_reporting_errors


def _entries(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_folder_appears_only_on_commit(tmp_path: Path) -> None:
    target = tmp_path / "Dataset001_X"
    with AtomicFolder(target, overwrite=False) as folder:
        (folder / "dataset.json").write_text("{}")
        assert not target.exists() and folder.name.startswith(".Dataset001_X.tmp-")
        assert folder.parent == tmp_path  # a sibling: the rename stays on one file system
    assert _entries(tmp_path) == []  # never committed: nothing left, not even the temporary folder
    writer = AtomicFolder(target, overwrite=False)
    with writer as folder:
        (folder / "dataset.json").write_text("{}")
        writer.commit()
    assert _entries(tmp_path) == ["Dataset001_X"] and _entries(target) == ["dataset.json"]


def test_error_leaves_nothing_and_an_existing_target_unchanged(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(ValueError, match="bad"):
        with AtomicFolder(target, overwrite=True) as folder:
            (folder / "new.txt").write_text("new")
            raise ValueError("bad")
    assert _entries(tmp_path) == ["out"] and _entries(target) == ["old.txt"]


def test_non_empty_target_needs_overwrite_and_is_replaced_as_a_whole(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    writer = AtomicFolder(target, overwrite=False)
    with pytest.raises(FileExistsError, match="--overwrite"), writer as folder:
        (folder / "new.txt").write_text("new")
        writer.commit()
    assert _entries(target) == ["old.txt"] and _entries(tmp_path) == ["out"]
    writer = AtomicFolder(target, overwrite=True)
    with writer as folder:
        (folder / "new.txt").write_text("new")
        writer.commit()
    assert _entries(target) == ["new.txt"] and _entries(tmp_path) == ["out"]


def test_an_empty_target_is_replaced_without_overwrite(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    writer = AtomicFolder(tmp_path / "out", overwrite=False)
    with writer as folder:
        (folder / "a").write_text("a")
        writer.commit()
    assert _entries(tmp_path / "out") == ["a"]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_folders_follow_the_umask(tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        writer = AtomicFolder(tmp_path / "out", overwrite=False)
        with writer as folder:
            assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask  # not mkdtemp's 0700
            writer.commit()
        results = AtomicFileSet(tmp_path / "results", ["summary.json"])
        with results as staging:
            (staging / "summary.json").write_text("{}")
            results.commit()
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((tmp_path / "results").stat().st_mode) == 0o777 & ~umask


def test_sigterm_inside_the_block_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(Terminated) as caught:
        with AtomicFolder(target, overwrite=False) as folder:
            (folder / "half.txt").write_text("half")
            os.kill(os.getpid(), signal.SIGTERM)
    assert caught.value.signal_number == signal.SIGTERM and _entries(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored after the block


def test_a_temporary_of_a_killed_process_is_removed_by_the_next_run(tmp_path: Path) -> None:
    # A pid that does not run: beyond the kernel's pid_max (4194304 at most).
    abandoned = tmp_path / ".out.tmp-99999999-abcd1234"
    abandoned.mkdir()
    foreign = tmp_path / ".other.tmp-99999999-abcd1234"
    foreign.mkdir()
    with AtomicFolder(tmp_path / "out", overwrite=False):
        pass
    assert _entries(tmp_path) == [".other.tmp-99999999-abcd1234"]


def test_file_set_replaces_the_results_together_and_removes_stale_ones(tmp_path: Path) -> None:
    folder = tmp_path / "pred"
    folder.mkdir()
    for name in ("case.nii.gz", "summary.json", "a.csv", "b.csv"):
        (folder / name).write_text("old")
    managed = ["summary.json", "a.csv", "b.csv", "overlays"]
    with pytest.raises(ValueError):
        with AtomicFileSet(folder, managed, last=["summary.json"]) as staging:
            (staging / "a.csv").write_text("new")
            raise ValueError("metric failed")
    assert {path.name: path.read_text() for path in folder.iterdir()} == {
        "case.nii.gz": "old", "summary.json": "old", "a.csv": "old", "b.csv": "old"
    }
    results = AtomicFileSet(folder, managed, last=["summary.json"])
    with results as staging:
        (staging / "a.csv").write_text("new")
        (staging / "overlays").mkdir()
        (staging / "overlays" / "case.png").write_text("png")
        (staging / "summary.json").write_text("new")
        moved = results.commit()
    assert [path.name for path in moved] == ["a.csv", "overlays", "summary.json"]  # the summary last
    # b.csv belonged to the old run and was not written now: removed, so it is never read beside the new summary.
    assert _entries(folder) == ["a.csv", "case.nii.gz", "overlays", "summary.json"]
    assert (folder / "summary.json").read_text() == "new" and (folder / "case.nii.gz").read_text() == "old"


def test_file_set_removes_a_folder_it_created_when_nothing_is_committed(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        with AtomicFileSet(tmp_path / "new" / "results", ["summary.json"]):
            raise ValueError("bad")
    assert _entries(tmp_path) == []


def test_user_errors_are_one_line_naming_the_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRACEBACK_ENV_VAR, raising=False)
    stream = io.StringIO()

    def missing() -> None:
        raise FileNotFoundError(2, "No such file or directory", "/data/x.png")

    assert run_reporting_errors("tool", missing, stream=stream) == (1, None)
    assert stream.getvalue() == "tool: error: /data/x.png: No such file or directory\n"
    stream = io.StringIO()
    assert run_reporting_errors("tool", lambda: {}["key"], stream=stream) == (1, None)
    text = stream.getvalue()
    assert text.startswith("tool: internal error: KeyError") and TRACEBACK_ENV_VAR in text and text.count("\n") == 1
    assert run_reporting_errors("tool", lambda: 7, stream=stream) == (0, 7)


def test_interrupts_end_with_128_plus_the_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRACEBACK_ENV_VAR, raising=False)
    stream = io.StringIO()

    def terminated() -> None:
        raise Terminated(signal.SIGTERM)

    assert run_reporting_errors("tool", terminated, stream=stream) == (128 + signal.SIGTERM, None)
    assert stream.getvalue() == "tool: interrupted (SIGTERM)\n"


@pytest.mark.parametrize("how", ["environment", "verbose"])
def test_the_traceback_is_there_when_asked_for(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    if how == "environment":
        monkeypatch.setenv(TRACEBACK_ENV_VAR, "1")
    else:
        monkeypatch.delenv(TRACEBACK_ENV_VAR, raising=False)

    def bad() -> None:
        raise ValueError("bad value")

    with pytest.raises(ValueError, match="bad value"):
        run_reporting_errors("tool", bad, verbose=how == "verbose")
