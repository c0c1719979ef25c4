"""User-facing errors: one clear line, a non-zero exit, never a traceback."""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])

EXIT_INPUT_ERROR = 2


class GalaxypropError(Exception):
    """An error caused by the user's input (file, column, name, value), reported in one line."""


#: What the machine, not the code, refused: a full disk or quota, a read-only or forbidden folder.
ENVIRONMENT_ERRNOS = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some of your quota",
                      errno.EROFS: "choose a writable folder", errno.EACCES: "check its and its folder's permissions",
                      errno.EPERM: "check its and its folder's permissions"}


def environment_error(err: OSError) -> str | None:
    """One line for an OSError the machine raised (full disk, read-only folder, no permission), or None."""
    remedy = ENVIRONMENT_ERRNOS.get(err.errno)
    if remedy is None:
        return None
    where = err.filename or "a file"
    return (f"{where}: {err.strerror or os.strerror(err.errno)} ({remedy}, then run the command again: galaxyprop "
            "writes its files whole, so nothing half-written was left, and a predict resumes from its finished "
            "chunks)")


def exit_on_error(func: F) -> F:
    """Run `func`; turn a GalaxypropError, or the machine refusing a write (a full disk, a read-only folder),
    into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except GalaxypropError as err:
            print(f"galaxyprop: error: {err}", file=sys.stderr)
            sys.exit(EXIT_INPUT_ERROR)
        except OSError as err:
            line = environment_error(err)
            if line is None:
                raise
            print(f"galaxyprop: error: {line}", file=sys.stderr)
            sys.exit(EXIT_INPUT_ERROR)

    return wrapper  # type: ignore[return-value]


@contextmanager
def reading(path: object, what: str) -> Iterator[None]:
    """Turn any failure to read `path` into one GalaxypropError line naming the file and `what` it is."""
    try:
        yield
    except GalaxypropError:
        raise
    except FileNotFoundError:
        raise GalaxypropError(f"{path}: {what} not found") from None
    except Exception as err:
        detail = str(err).splitlines()[0] if str(err) else ""
        raise GalaxypropError(f"{path}: cannot read {what} ({type(err).__name__}: {detail})") from None
