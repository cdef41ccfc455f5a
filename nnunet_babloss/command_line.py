"""How every command-line tool of the package ends: one line naming the problem, or the traceback when asked for.

:func:`run_reporting_errors` runs a tool's library call. Bad input (``ValueError``, ``OSError`` incl.
``FileNotFoundError``, SimpleITK's ``RuntimeError`` for an unreadable image, ``ImportError`` of an optional extra)
ends with ``<prog>: error: <message>`` on stderr and exit status 1; the messages are written at the place that
raises them to name the file and the field or value at fault. Ctrl-C and SIGTERM end with ``<prog>: interrupted``
and 128 + the signal number. Anything else is a bug: one line with its type, and a hint how to see the traceback.
``--verbose`` (where a tool has it) or ``NNUNET_BABLOSS_TRACEBACK=1`` re-raises every error with its traceback.

:class:`ArgumentParser` is how every tool spells its options: nnU-Net's spellings where the tool mirrors one of
its commands (``-i -o -d -c -f -tr -p -chk -device``, ``--disable_tta``), kebab-case (``--landmark-threshold``)
for our own long options. An option renamed to that style keeps its old spelling for one release: the parser
accepts it and warns ``<prog>: warning: --old is deprecated, use --new`` on stderr.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO, TypeVar

__all__ = [
    "TRACEBACK_ENV_VAR",
    "USER_ERRORS",
    "ArgumentParser",
    "run_reporting_errors",
    "traceback_requested",
]

TRACEBACK_ENV_VAR = "NNUNET_BABLOSS_TRACEBACK"
# What bad input raises. RuntimeError: SimpleITK's only exception type ("Unable to determine ImageIO reader for
# <file>", "<file> ... does not exist"), and our checkpoint refusal; ImportError: a missing optional extra.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, RuntimeError, ImportError)

Result = TypeVar("Result")


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` that still accepts the old spellings of renamed options, with a warning.

    Old spellings are rewritten to the new ones before parsing (``--old value`` and ``--old=value``; tokens after
    ``--`` are left alone), so required options, choices and error messages all speak of the new spelling, and
    ``--help`` lists only the new one (plus one epilog line naming the old ones). Abbreviations of an old
    spelling are not recognised.

    Args:
        renamed_options: ``{old spelling: new spelling}``; every new spelling must be an option of the parser
            (checked when parsing, so a typo fails the tool's tests).
        *args, **kwargs: as for ``argparse.ArgumentParser``.

    Example:
        >>> parser = ArgumentParser(prog="tool", renamed_options={"--query_uv": "--query-uv"})
        >>> _ = parser.add_argument("--query-uv")
        >>> parser.parse_args(["--query_uv", "q.json"]).query_uv  # prints the warning on stderr
        'q.json'
    """

    def __init__(self, *args: Any, renamed_options: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        self.renamed_options: dict[str, str] = dict(renamed_options or {})
        if self.renamed_options:
            note = "deprecated spellings, accepted until the next release: " + ", ".join(
                f"{old} (use {new})" for old, new in self.renamed_options.items()
            )
            kwargs["epilog"] = f"{kwargs['epilog']}\n\n{note}" if kwargs.get("epilog") else note
        super().__init__(*args, **kwargs)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        arguments = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(self._with_new_spellings(arguments), namespace)

    def _with_new_spellings(self, arguments: list[str]) -> list[str]:
        unknown = [new for new in self.renamed_options.values() if new not in self._option_string_actions]
        if unknown:  # a programming error of the tool, not bad input
            raise ValueError(f"{self.prog}: renamed_options names options the parser lacks: {unknown}")
        rewritten: list[str] = []
        for position, argument in enumerate(arguments):
            if argument == "--":
                return rewritten + arguments[position:]
            spelling, equals, value = argument.partition("=")
            if spelling in self.renamed_options:
                new = self.renamed_options[spelling]
                print(f"{self.prog}: warning: {spelling} is deprecated, use {new}", file=sys.stderr)
                argument = f"{new}{equals}{value}"
            rewritten.append(argument)
        return rewritten


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


