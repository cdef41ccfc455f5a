"""Outputs that appear complete or not at all: the one mechanism every tool that writes a dataset or results uses.

:class:`AtomicFolder` builds a folder in a hidden temporary sibling (``.<name>.tmp-<pid>-<random>`` beside the
target, so the final rename stays on one file system) and renames it into place only when everything has been
written. :class:`AtomicFileSet` does the same for a set of result files written into a folder that holds other
things (e.g. ``summary.json`` and CSVs beside the predictions): the files are staged in a hidden sibling folder and
moved in together, the summary last, replacing the previous run's files, so an old summary never sits beside a new
CSV.

On any error, and on SIGINT or SIGTERM (turned into :class:`Terminated` while the block runs, so the clean-up runs
instead of the process dying mid-write), the temporary folder is removed. Only SIGKILL can leave one behind; it is
hidden, so nnU-Net (which finds datasets by the ``Dataset<ID>`` prefix) never takes it for a dataset, and the next
run of the same target removes temporaries whose process has ended.

Folders are created with ``os.mkdir`` (mode 0o777 less the user's umask), like nnU-Net's own outputs, not with
``tempfile.mkdtemp`` (always 0700).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, TracebackType

__all__ = [
    "AtomicFileSet", "AtomicFolder", "Terminated", "make_hidden_folder", "make_unique_folder", "termination_raises"
]


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived while an atomic output was being written (a ``KeyboardInterrupt``, so that ``except
    Exception`` blocks do not swallow it and clean-up code runs as for Ctrl-C)."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(f"terminated by signal {signal_number}")
        self.signal_number = signal_number


def _raise_terminated(signal_number: int, frame: FrameType | None) -> None:
    raise Terminated(signal_number)


@contextmanager
def termination_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (SIGINT already raises ``KeyboardInterrupt``).

    Only in the main thread and only where SIGTERM still has its default action (a caller's own handler is kept).
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def make_unique_folder(parent: Path, prefix: str) -> Path:
    """A new, empty folder ``parent/<prefix><pid>-<random>`` with the umask's permissions (unlike ``mkdtemp``)."""
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        path = parent / f"{prefix}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            path.mkdir()  # mode 0o777 & ~umask
        except FileExistsError:
            continue
        return path


def make_hidden_folder(parent: Path, name: str, kind: str = "tmp") -> Path:
    """A new, empty folder ``parent/.<name>.<kind>-<pid>-<random>`` with the umask's permissions."""
    return make_unique_folder(parent, f".{name}.{kind}-")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_abandoned(parent: Path, name: str) -> None:
    """Remove temporaries of ``name`` left by processes that no longer run (killed with SIGKILL)."""
    if not parent.is_dir():
        return
    for path in parent.glob(f".{name}.*-*-*"):
        kind_pid = path.name[len(name) + 2:].split("-")
        if len(kind_pid) == 3 and kind_pid[0] in ("tmp", "old") and kind_pid[1].isdigit():
            if int(kind_pid[1]) != os.getpid() and not _process_alive(int(kind_pid[1])):
                shutil.rmtree(path, ignore_errors=True)


class _StagedOutput:
    """What both writers share: a hidden staging folder, SIGTERM as an exception, clean-up unless committed.

    Subclasses set :attr:`_parent` and :attr:`_name` (where the staging folder goes and the name it hides behind).
    """

    def __init__(self, parent: Path, name: str) -> None:
        self._parent = parent
        self._name = name
        self.path: Path | None = None
        self.committed = False
        self._created: list[Path] = []  # folders made by __enter__, removed again if nothing is committed
        self._signals = termination_raises()

    def __enter__(self) -> Path:
        self._signals.__enter__()
        try:
            self._created = [path for path in (self._parent, *self._parent.parents) if not path.exists()][::-1]
            _remove_abandoned(self._parent, self._name)
            self.path = make_hidden_folder(self._parent, self._name)
        except BaseException:
            self._signals.__exit__(None, None, None)
            raise
        return self.path

    def _staging(self) -> Path:
        if self.path is None:
            raise RuntimeError("commit() outside the with-block")
        return self.path

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            if not self.committed and self.path is not None:
                shutil.rmtree(self.path, ignore_errors=True)
                for folder in reversed(self._created):
                    try:
                        folder.rmdir()
                    except OSError:  # not empty: something else lives there now
                        break
        finally:
            self._signals.__exit__(kind, error, traceback)


class AtomicFolder(_StagedOutput):
    """Context manager: a temporary folder that becomes ``target`` on :meth:`commit`, or disappears.

    An existing empty target is replaced; a non-empty one only with ``overwrite`` (the old folder is renamed aside
    first and removed after the new one is in place, so the target is never half old, half new).

    Example:
        >>> with AtomicFolder(Path("/raw/Dataset001_X"), overwrite=False) as folder:  # doctest: +SKIP
        ...     (folder / "dataset.json").write_text("{}")
        ...     folder.commit()
    """

    exists_message = "the output folder exists already and is not empty; pass --overwrite to replace it"

    def __init__(self, target: Path, *, overwrite: bool) -> None:
        self.target = Path(target)
        self.overwrite = overwrite
        super().__init__(self.target.parent, self.target.name)

    def commit(self) -> Path:
        """Move the temporary folder to the target.

        Raises:
            FileExistsError: a non-empty target exists (or appeared meanwhile) and ``overwrite`` is off.
        """
        staging = self._staging()
        if self.target.is_dir() and not self.target.is_symlink() and not any(self.target.iterdir()):
            self.target.rmdir()
        if self.target.exists() or self.target.is_symlink():
            if not self.overwrite:
                raise FileExistsError(f"{self.target}: {self.exists_message}")
            old = make_hidden_folder(self.target.parent, self.target.name, "old")
            old.rmdir()
            self.target.rename(old)
            staging.rename(self.target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(self.target)
        self.committed = True
        return self.target


class AtomicFileSet(_StagedOutput):
    """Context manager: result files staged in a hidden folder and moved into ``folder`` together on :meth:`commit`.

    Args:
        folder: Where the results go (created if missing; may hold other files, which are left alone).
        managed: Names of every file or folder this tool may write there. On commit, the staged ones replace the old
            ones and the managed names that were not written this time are removed, so no stale result stays.
        last: Names moved last (e.g. ``summary.json``: readers see it only when its CSVs are in place).
    """

    def __init__(self, folder: Path, managed: Iterable[str], *, last: Iterable[str] = ()) -> None:
        self.folder = Path(folder)
        self.managed = tuple(managed)
        self.last = tuple(last)
        super().__init__(self.folder, "results")

    def commit(self) -> list[Path]:
        """Move the staged files into the folder (``last`` ones last); returns their final paths."""
        staging = self._staging()
        staged = sorted(staging.iterdir(), key=lambda path: (path.name in self.last, path.name))
        unexpected = [path.name for path in staged if path.name not in self.managed]
        if unexpected:
            raise RuntimeError(f"staged files {unexpected} are not among the managed names {list(self.managed)}")
        written = {path.name for path in staged}
        for name in self.managed:  # the summary goes first, so a reader never pairs it with other files
            if name not in written or name in self.last:
                _remove(self.folder / name)
        moved = []
        for path in staged:
            target = self.folder / path.name
            if path.is_dir():
                _remove(target)
            path.replace(target)
            moved.append(target)
        staging.rmdir()
        self.committed = True
        return moved


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
