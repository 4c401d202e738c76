"""The project's input error, and an exception hook that ends a bundle run on its message.

``python -m monai.bundle run`` wraps every exception raised inside a config item in MONAI's own
``RuntimeError: Failed to evaluate ConfigExpression`` / ``Failed to instantiate component`` (and a transform's
in ``applying transform``), so an input error's message sits in the middle of a long traceback. The hook of
:py:func:`install_excepthook` finds the input error inside that chain and prints only the input error's own
frames and, last, its message; log records that repeat it are dropped so that the message is read once.
The bundles install it with the import statement ``"$import monai_genesis.excepthook"`` in ``imports`` (MONAI
runs every import statement of a config before it resolves any other item).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
from types import TracebackType

__all__ = ["FULL_TRACEBACK_ENV", "GenesisInputError", "find_input_error", "format_input_error", "install_excepthook"]

#: set this environment variable to a non-empty value to see the whole traceback of an input error
FULL_TRACEBACK_ENV = "MONAI_GENESIS_FULL_TRACEBACK"

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# how a DataLoader worker passes on an exception: the formatted traceback as text, in which ours is one line
_WORKER_LINE = re.compile(rf"^(?:{re.escape(__name__)}\.)?GenesisInputError: (.*?)(?:\n\n|\n(?=\S+Error\b)|\Z)", re.M | re.S)


class GenesisInputError(ValueError):
    """Bad input (a file, a value, a setting): the message names it, says what is wrong and how to fix it.

    A ``ValueError``, so code that catches ``ValueError`` keeps working.

    Args:
        message: the message, one sentence naming the input, then the fix.
    """


def _raised_in_project(exc: BaseException) -> bool:
    """Whether ``exc`` is a ``ValueError`` or an ``OSError`` (a missing or existing file) raised in this package."""
    if not isinstance(exc, (ValueError, OSError)):
        return False
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep)


def find_input_error(exc: BaseException | None) -> BaseException | None:
    """Return the input error that caused ``exc``: ``exc`` itself or the first one in its chain of causes.

    An input error is a :py:class:`GenesisInputError`, or a ``ValueError`` or ``OSError`` (``FileNotFoundError``,
    ``FileExistsError``) raised in this package; one passed on as text by a ``DataLoader`` worker is rebuilt as
    a ``GenesisInputError``.

    Args:
        exc: the exception that ended the program.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, GenesisInputError) or _raised_in_project(exc):
            return exc
        if "DataLoader worker" in str(exc):
            found = _WORKER_LINE.search(str(exc))
            if found:
                return GenesisInputError(found.group(1).strip())
        exc = exc.__cause__ if exc.__cause__ is not None else (None if exc.__suppress_context__ else exc.__context__)
    return None


def format_input_error(err: BaseException) -> str:
    """The text that ends a run stopped by ``err``: the frames from its raise to where it was caught, then its message.

    Args:
        err: the input error (from :py:func:`find_input_error`).
    """
    frames = traceback.format_tb(err.__traceback__) if err.__traceback__ is not None else []
    lines = [f"The run stopped on bad input ({FULL_TRACEBACK_ENV}=1 shows the whole traceback).\n"]
    if frames:
        lines.append("Traceback of the input check (most recent call last):\n")
        lines.extend(frames)
    lines.append(f"{type(err).__name__}: {err}\n")
    return "".join(lines)


def _repeats_input_error(record: logging.LogRecord) -> bool:
    """Whether ``record`` repeats an input error that propagates (the hook prints it at the end).

    Records logged while it propagates that carry its traceback or its message are repeats, e.g. ignite's
    "Engine run is terminating due to exception: ..." and ``StatsHandler``'s ``Exception: ...``.
    """
    exc = record.exc_info[1] if record.exc_info else sys.exc_info()[1]
    err = find_input_error(exc) if exc is not None else None
    if err is None:
        return False
    return bool(record.exc_info) or str(err) in record.getMessage()


class _DropRepeatedInputErrors(logging.Filter):
    """Drop the log records that repeat an input error on its way to the exception hook."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _repeats_input_error(record)


_FILTER = _DropRepeatedInputErrors()


def _input_error_hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    err = None if os.environ.get(FULL_TRACEBACK_ENV) else find_input_error(exc)
    if err is None:
        _input_error_hook.previous(exc_type, exc, tb)
        return
    sys.stderr.write(format_input_error(err))
    sys.stderr.flush()


_input_error_hook.previous = sys.excepthook


def install_excepthook() -> None:
    """Make an uncaught input error end the program with its own frames and message, printed last and once.

    Other exceptions go to the hook installed before. Log handlers present now (the bundle's ``logging.conf``
    has set them up) drop the records that repeat an input error while it propagates, e.g. ignite's "Engine
    run is terminating due to exception". Calling it again changes nothing.
    """
    if sys.excepthook is not _input_error_hook:
        _input_error_hook.previous = sys.excepthook
        sys.excepthook = _input_error_hook
    for handler in logging.getLogger().handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
