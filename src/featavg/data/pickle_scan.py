"""A linear pre-scan of a pickle's opcodes that refuses the shapes no dataset file has.

Refusing unknown globals (see :mod:`featavg.data.cifar`) stops code execution, but a pickle
of plain lists, tuples and dicts can still cost exponential time or memory *after* it is
loaded, through shared references: ``L1 = [L0, L0]; L2 = [L1, L1]; ...`` is 30 memo lookups
in 200 bytes and 2**30 elements to whoever walks it (``np.asarray``, ``hash`` of a tuple
key, ``repr``). :func:`scan` walks the opcode stream once (``pickletools.genops``, so the
scan is linear in the file) with an abstract stack that records only what kind each object
is, and refuses:

* a memo lookup (``GET``) of a mutable or nested container: a container referenced twice
  (or from inside itself). Atoms (numbers, strings, bytes, None), globals, dtypes and
  tuples of atoms may be shared, as the genuine files (Python 2's cPickle and Python 3's
  pickle, protocols 2 to 5) share them;
* ``DUP``, extension codes, persistent ids, out-of-band buffers and the object-building
  opcodes (``INST``, ``OBJ``, ``NEWOBJ``): no dataset pickle uses them;
* a malformed stream (unbalanced marks, a lookup of a memo entry never stored).

Nothing here unpickles anything.
"""

from __future__ import annotations

import pickletools
from typing import BinaryIO

ATOM, FLAT, BOX, MARK = "atom", "flat", "box", "mark"

_ATOMS = frozenset(
    "INT BININT BININT1 BININT2 LONG LONG1 LONG4 STRING BINSTRING SHORT_BINSTRING BINBYTES "
    "SHORT_BINBYTES BINBYTES8 BYTEARRAY8 NONE NEWTRUE NEWFALSE BINUNICODE8 FLOAT BINFLOAT".split()
)
#: text opcodes: their (short) value is kept, as protocol 4 names globals with two of them
_TEXTS = frozenset(("UNICODE", "SHORT_BINUNICODE", "BINUNICODE"))
_GETS = frozenset(("GET", "BINGET", "LONG_BINGET"))
_PUTS = frozenset(("PUT", "BINPUT", "LONG_BINPUT"))
_BULK = frozenset(("APPENDS", "SETITEMS", "ADDITEMS"))  # mark + items into the container below
#: calls whose result is an immutable scalar (bytes; a dtype), safe to share (protocol 2
#: names the module ``numpy``, protocol 4 too)
_ATOM_CALLS = frozenset(("_codecs encode", "numpy dtype"))


class UnsafePickle(ValueError):
    """The pickle holds a structure no dataset file has (the message says which)."""


def _atom(kind: str) -> bool:
    return kind == ATOM or kind.startswith(("text:", "global:"))


def _shareable(kind: str) -> bool:
    return kind == FLAT or _atom(kind)


class _Stack:
    """The abstract stack: one kind per object, marks as ``MARK``."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def push(self, kind: str) -> None:
        self.items.append(kind)

    def pop(self, n: int = 1) -> list[str]:
        if n > len(self.items) or MARK in self.items[len(self.items) - n :]:
            raise UnsafePickle("malformed pickle: stack underflow")
        out = self.items[len(self.items) - n :]
        del self.items[len(self.items) - n :]
        return out

    def pop_to_mark(self) -> list[str]:
        for i in range(len(self.items) - 1, -1, -1):
            if self.items[i] == MARK:
                out = self.items[i + 1 :]
                del self.items[i:]
                return out
        raise UnsafePickle("malformed pickle: no mark")

    def top(self) -> str:
        if not self.items or self.items[-1] == MARK:
            raise UnsafePickle("malformed pickle: stack underflow")
        return self.items[-1]


def _container(items: list[str]) -> str:
    """A tuple / frozenset of ``items``: shareable only when it holds atoms or globals
    (tuples of tuples shared at every level are the hash bomb)."""
    return FLAT if all(_atom(k) for k in items) else BOX


def scan(stream: BinaryIO) -> None:
    """Walk the pickle in ``stream`` once; raise :class:`UnsafePickle` (or ``ValueError``
    from ``pickletools`` for a truncated or garbled stream) on what is refused above."""
    stack = _Stack()
    memo: dict[int, str] = {}
    for op, arg, _ in pickletools.genops(stream):
        name = op.name
        if name in _ATOMS:
            stack.push(ATOM)
        elif name in _TEXTS:
            stack.push(f"text:{arg}" if isinstance(arg, str) and len(arg) <= 100 else ATOM)
        elif name in ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"):
            stack.push(BOX)
        elif name == "EMPTY_TUPLE":
            stack.push(FLAT)
        elif name == "MARK":
            stack.push(MARK)
        elif name in ("TUPLE", "FROZENSET"):
            stack.push(_container(stack.pop_to_mark()))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            stack.push(_container(stack.pop(int(name[-1]))))
        elif name in ("LIST", "DICT"):
            stack.pop_to_mark()
            stack.push(BOX)
        elif name == "APPEND":
            stack.pop()
            stack.top()
        elif name == "SETITEM":
            stack.pop(2)
            stack.top()
        elif name in _BULK:
            stack.pop_to_mark()
            stack.top()
        elif name == "POP":
            stack.pop()
        elif name == "BUILD":  # state applied to the object below; it keeps its kind
            stack.pop()
            stack.top()
        elif name == "POP_MARK":
            stack.pop_to_mark()
        elif name in _GETS:
            if not isinstance(arg, int) or arg not in memo:
                raise UnsafePickle(f"malformed pickle: memo entry {arg} read before stored")
            if not _shareable(memo[arg]):
                raise UnsafePickle("a container referenced twice (shared or recursive)")
            stack.push(memo[arg])
        elif name in _PUTS:
            memo[int(arg)] = stack.top()  # type: ignore[arg-type]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack.top()
        elif name == "GLOBAL":
            stack.push(f"global:{arg}")
        elif name == "STACK_GLOBAL":
            module, qualname = stack.pop(2)
            if module.startswith("text:") and qualname.startswith("text:"):
                stack.push(f"global:{module[5:]} {qualname[5:]}")
            else:
                stack.push("global:?")
        elif name == "REDUCE":
            func, _args = stack.pop(2)
            stack.push(ATOM if func.removeprefix("global:") in _ATOM_CALLS else BOX)
        elif name == "STOP":
            stack.pop()
            return
        elif name not in ("PROTO", "FRAME"):
            raise UnsafePickle(f"opcode {name} (not used by dataset files)")
    raise UnsafePickle("malformed pickle: no STOP")
