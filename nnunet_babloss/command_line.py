"""How every command-line tool of the package ends: one line naming the problem, or the traceback when asked for.

:func:`run_reporting_errors` runs a tool's library call. Bad input (``ValueError``, ``OSError`` incl.
``FileNotFoundError``, SimpleITK's ``RuntimeError`` for an unreadable image, ``ImportError`` of an optional extra)
ends with ``<prog>: error: <message>`` on stderr and exit status 1; the messages are written at the place that
raises them to name the file and the field or value at fault. Ctrl-C and SIGTERM end with ``<prog>: interrupted``
and 128 + the signal number. Anything else is a bug: one line with its type, and a hint how to see the traceback.
``--verbose`` (where a tool has it) or ``NNUNET_BABLOSS_TRACEBACK=1`` re-raises every error with its traceback.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, TypeVar

__all__ = ["TRACEBACK_ENV_VAR", "USER_ERRORS", "read_json_object", "run_reporting_errors", "traceback_requested"]

TRACEBACK_ENV_VAR = "NNUNET_BABLOSS_TRACEBACK"
# What bad input raises. RuntimeError: SimpleITK's only exception type ("Unable to determine ImageIO reader for
# <file>", "<file> ... does not exist"), and our checkpoint refusal; ImportError: a missing optional extra.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, RuntimeError, ImportError)

Result = TypeVar("Result")


def traceback_requested(verbose: bool = False) -> bool:
    """Whether errors should show their traceback (``--verbose`` or ``NNUNET_BABLOSS_TRACEBACK=1``)."""
    return verbose or os.environ.get(TRACEBACK_ENV_VAR, "").strip().lower() in ("1", "true", "yes")


def run_reporting_errors(
    prog: str, action: Callable[[], Result], *, verbose: bool = False, stream: TextIO | None = None
) -> tuple[int, Result | None]:
    """Run ``action()``; return ``(0, its result)`` or, after printing one message, ``(exit status, None)``.

    Args:
        prog: The tool's name, which starts every message (as argparse does).
        action: The library call.
        verbose: Re-raise every error with its traceback (also with ``NNUNET_BABLOSS_TRACEBACK=1``).
        stream: Where messages go (default: ``sys.stderr``).

    Returns:
        ``(0, result)``; ``(1, None)`` after an error; ``(128 + signal, None)`` after Ctrl-C or SIGTERM.
    """
    out = stream if stream is not None else sys.stderr
    if traceback_requested(verbose):
        return 0, action()
    try:
        return 0, action()
    except KeyboardInterrupt as interrupt:
        signal_number = int(getattr(interrupt, "signal_number", signal.SIGINT))
        print(f"{prog}: interrupted ({signal.Signals(signal_number).name})", file=out)
        return 128 + signal_number, None
    except USER_ERRORS as error:
        # RuntimeError is also what a library raises for its own failures: say how to see where it came from.
        hint = f" (set {TRACEBACK_ENV_VAR}=1 for the traceback)" if type(error) is RuntimeError else ""
        print(f"{prog}: error: {_message(error)}{hint}", file=out)
        return 1, None
    except Exception as error:  # a bug, not bad input: still one line, with the way to the traceback
        print(
            f"{prog}: internal error: {type(error).__name__}: {_message(error)} (set {TRACEBACK_ENV_VAR}=1 for the "
            "traceback and please report it)",
            file=out,
        )
        return 1, None


def _message(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        # "[Errno 2] No such file or directory: 'x'" -> "x: No such file or directory"
        return f"{error.filename}: {error.strerror}"
    return str(error).strip() or type(error).__name__


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A user-given JSON file that must hold an object; errors start with ``what`` (the option) and the path.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: not UTF-8 JSON, or not an object.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path}: file not found")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{what} {path}: not valid JSON ({error})") from None
    if not isinstance(content, dict):
        raise ValueError(f"{what} {path}: must hold a JSON object, got {type(content).__name__}")
    return content
