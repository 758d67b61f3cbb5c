"""Coarse groupings of the fine classes: which binary (or G-way) task a coarse model learns.

The paper's real-data experiments train a model on coarse labels (the class *group* of a
sample, J+ vs J- in the paper) and compare it with a 10-class model read out through the same
grouping. The authors' training scripts use ``parity`` (even classes -> 0, odd -> 1); their
10-class evaluation script uses ``halves`` (0-4 -> 0, 5-9 -> 1). Pick one grouping and use it
for both models.

The fine label always stays available in the data; a :class:`Grouping` only maps it, and its
:meth:`Grouping.describe` goes into every summary so a result says which grouping it used.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from featavg.config import ConfigError

GROUPINGS = ("parity", "halves")

_HELP = (
    "allowed: parity, halves, a JSON/TOML file holding {\"groups\": [...]}, or inline '0,1,0,...'"
)


@dataclass(frozen=True)
class Grouping:
    """``groups[c]`` is the coarse group of fine class c; groups are 0..G-1, each used."""

    name: str
    groups: tuple[int, ...]

    @property
    def num_groups(self) -> int:
        """G, the number of coarse groups."""
        return max(self.groups) + 1

    def coarse(self, y: torch.Tensor) -> torch.Tensor:
        """Fine labels (any shape, integers 0..k-1) -> coarse labels int64, same shape and
        device."""
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= len(self.groups)):
            raise ValueError(f"fine labels must lie in 0..{len(self.groups) - 1}")
        table = torch.tensor(self.groups, dtype=torch.int64, device=y.device)
        return table[y.long()]

    def members(self, group: int) -> tuple[int, ...]:
        """The fine classes of ``group`` (J_s in the paper's notation), ascending."""
        return tuple(c for c, g in enumerate(self.groups) if g == group)

    def describe(self) -> dict[str, Any]:
        """JSON-able: ``{"name", "groups": [...], "members": [[...], ...]}``."""
        return {
            "name": self.name,
            "groups": list(self.groups),
            "members": [list(self.members(g)) for g in range(self.num_groups)],
        }


def validate_groups(values: Any, num_classes: int, where: str) -> tuple[int, ...]:
    """Check a user-given list of group ids; ``where`` names its origin in errors."""
    if not isinstance(values, list | tuple):
        raise ConfigError(
            f"{where}: groups must be a list of integers, got {type(values).__name__}"
        )
    if len(values) != num_classes:
        raise ConfigError(
            f"{where}: {len(values)} group ids, expected one per class ({num_classes})"
        )
    bad = [v for v in values if not isinstance(v, int) or isinstance(v, bool)]
    if bad:
        raise ConfigError(f"{where}: group ids must be integers, got {bad[0]!r}")
    if min(values) < 0:
        raise ConfigError(f"{where}: group ids must be >= 0, got {min(values)}")
    if max(values) >= num_classes:  # checked first: the next line counts up to it
        raise ConfigError(
            f"{where}: group id {max(values)} is out of range (ids must be 0..G-1, G <= "
            f"{num_classes} groups)"
        )
    unused = sorted(set(range(max(values) + 1)) - set(values))
    if unused:
        raise ConfigError(
            f"{where}: group(s) {unused} have no member (ids must be 0..G-1, all used)"
        )
    if max(values) < 1:
        raise ConfigError(f"{where}: all classes in one group; need at least 2 groups")
    return tuple(int(v) for v in values)


def _from_file(path: Path, num_classes: int) -> Grouping:
    try:
        text = path.read_text()
        data: Any = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"grouping: {path}: cannot read grouping file ({err})") from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(
            f"grouping: {path}: not valid {path.suffix[1:].upper()} ({err})"
        ) from None
    if isinstance(data, dict):
        if "groups" not in data:
            raise ConfigError(f"grouping: {path}: no 'groups' key; {_HELP}")
        data = data["groups"]
    return Grouping("custom", validate_groups(data, num_classes, f"grouping: {path}"))


def get_grouping(spec: str, num_classes: int = 10) -> Grouping:
    """Resolve a grouping spec: ``"parity"`` (even classes -> 0, odd -> 1), ``"halves"``
    (first half of the classes -> 0, rest -> 1), a path to a ``.json`` / ``.toml`` file
    holding ``{"groups": [...]}`` (JSON may also be a bare list), or inline ``"0,0,1,..."``.

    Invalid specs raise :class:`ConfigError` naming the problem (wrong length, non-integers,
    negative ids, an empty group / gaps in the ids, a single group).
    """
    spec = spec.strip()
    if spec == "parity":
        return Grouping("parity", tuple(c % 2 for c in range(num_classes)))
    if spec == "halves":
        return Grouping("halves", tuple(int(c >= num_classes / 2) for c in range(num_classes)))
    path = Path(spec).expanduser()
    try:
        is_file = path.is_file()
    except OSError:  # a name too long to be a file (ENAMETOOLONG): not a file, not a crash
        is_file = False
    if path.suffix in (".json", ".toml") or is_file:
        if not is_file:
            raise ConfigError(f"grouping: {path}: grouping file not found; {_HELP}")
        return _from_file(path, num_classes)
    if "," in spec:
        try:
            values: list[Any] = [int(v) for v in spec.split(",")]
        except ValueError:
            raise ConfigError(f"grouping: {spec!r} is not a list of integers; {_HELP}") from None
        return Grouping("custom", validate_groups(values, num_classes, "grouping"))
    raise ConfigError(f"grouping: unknown {spec!r}; {_HELP}")
