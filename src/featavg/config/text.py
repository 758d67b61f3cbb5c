"""What a config error says: :class:`ConfigError` (one line naming the field, exit code 2)
and the helpers that keep an echoed value short and printable. Imports nothing of
featavg: every module may raise it."""

from __future__ import annotations

import reprlib
from collections.abc import Iterable
from typing import Any

# an error line is at most this long: a value echoed back is shortened, never the whole input
MAX_MESSAGE = 300
# a dotted key has at most this many parts; a config at most this depth (sections + lists)
MAX_DEPTH = 16


class ConfigError(ValueError):
    """A user-facing configuration error (one line, names the field)."""


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (``...`` marks the cut), for messages that
    echo user input: a 100 kB string or a deeply nested list must not flood the terminal."""
    short = reprlib.Repr()  # bounds the work as well as the text on huge nested values
    short.maxlevel, short.maxlist, short.maxdict, short.maxstring = 3, 6, 6, limit
    short.maxother = short.maxlong = limit
    return clip(short.repr(value), limit)


def clip(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters (``...`` marks the cut), control characters
    (line breaks, terminal escapes) shown escaped: a key or value echoed in a message."""
    safe = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text[: 4 * limit])
    return safe if len(safe) <= limit else safe[: limit - 3] + "..."


def error_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` as one printable line of at most ``limit`` characters: line breaks become
    spaces, other control characters (terminal escapes) are shown escaped, the rest cut."""
    return clip(" ".join(text[: 4 * limit].split()), limit)


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` to ``word`` (difflib), else
    ''. For messages that name a mistyped experiment, preset, key or layer."""
    import difflib

    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
