"""User-facing errors: one clear line, a non-zero exit, never a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])

EXIT_INPUT_ERROR = 2


class GalaxypropError(Exception):
    """An error caused by the user's input (file, column, name, value), reported in one line."""


def exit_on_error(func: F) -> F:
    """Run `func`; turn a GalaxypropError into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except GalaxypropError as err:
            print(f"galaxyprop: error: {err}", file=sys.stderr)
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
