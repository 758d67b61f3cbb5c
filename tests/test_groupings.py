"""Coarse groupings of the fine classes: built-ins, files, inline specs and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from featavg.config import ConfigError
from featavg.data.groupings import GROUPINGS, Grouping, get_grouping


def test_parity_and_halves() -> None:
    parity = get_grouping("parity")
    halves = get_grouping("halves")
    assert parity.groups == (0, 1, 0, 1, 0, 1, 0, 1, 0, 1)
    assert halves.groups == (0, 0, 0, 0, 0, 1, 1, 1, 1, 1)
    assert parity.members(0) == (0, 2, 4, 6, 8) and parity.members(1) == (1, 3, 5, 7, 9)
    assert halves.members(1) == (5, 6, 7, 8, 9)
    assert parity.num_groups == halves.num_groups == 2
    assert set(GROUPINGS) == {"parity", "halves"}
    # other class counts: halves puts the first half (rounded down) in group 0
    assert get_grouping("halves", num_classes=5).groups == (0, 0, 0, 1, 1)


def test_coarse_maps_labels_elementwise() -> None:
    y = torch.tensor([[3, 4], [9, 0]])
    for g in (get_grouping("parity"), get_grouping("halves")):
        got = g.coarse(y)
        want = torch.tensor([[g.groups[int(v)] for v in row] for row in y])
        assert got.dtype == torch.int64 and torch.equal(got, want)
    assert get_grouping("parity").coarse(torch.tensor([3, 4])).tolist() == [1, 0]
    with pytest.raises(ValueError, match="0..9"):
        get_grouping("parity").coarse(torch.tensor([10]))


def test_describe_is_json_able() -> None:
    desc = get_grouping("halves").describe()
    assert json.loads(json.dumps(desc)) == {
        "name": "halves",
        "groups": [0, 0, 0, 0, 0, 1, 1, 1, 1, 1],
        "members": [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]],
    }


def test_inline_and_files(tmp_path: Path) -> None:
    groups = [2, 0, 1, 1, 0, 2, 2, 0, 1, 0]
    inline = get_grouping(",".join(map(str, groups)))
    assert inline == Grouping("custom", tuple(groups))
    assert inline.num_groups == 3 and inline.members(2) == (0, 5, 6)
    (tmp_path / "g.json").write_text(json.dumps({"groups": groups}))
    (tmp_path / "list.json").write_text(json.dumps(groups))
    (tmp_path / "g.toml").write_text(f"groups = {groups}\n")
    for name in ("g.json", "list.json", "g.toml"):
        assert get_grouping(str(tmp_path / name)) == inline


@pytest.mark.parametrize(
    ("spec", "what"),
    [
        ("0,1,0,1", "4 group ids, expected one per class (10)"),
        ("0,1,0,1,0,1,0,1,0,x", "not a list of integers"),
        ("0,1,0,1,0,1,0,1,0,-1", "must be >= 0"),
        ("0,2,0,2,0,2,0,2,0,2", "group(s) [1] have no member"),
        ("0,0,0,0,0,0,0,0,0,0", "at least 2 groups"),
        ("thirds", "unknown 'thirds'"),
    ],
)
def test_inline_errors(spec: str, what: str) -> None:
    with pytest.raises(ConfigError) as err:
        get_grouping(spec)
    assert what in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("name", "text", "what"),
    [
        ("a.json", '{"groups": [0, 1, 0, 1, 0, 1, 0, 1, 0, 1.5]}', "must be integers, got 1.5"),
        ("b.json", '{"groups": [0, 1, 0, 1, 0, 1, 0, 1, 0, true]}', "must be integers, got True"),
        ("c.json", '{"grups": [0, 1]}', "no 'groups' key"),
        ("d.json", "{not json", "not valid JSON"),
        ("e.toml", "groups = [0, 1", "not valid TOML"),
        ("f.json", '{"groups": "0,1"}', "must be a list of integers"),
    ],
)
def test_file_errors(tmp_path: Path, name: str, text: str, what: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        get_grouping(str(path))
    msg = str(err.value)
    assert str(path) in msg and what in msg and "\n" not in msg, msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="grouping file not found"):
        get_grouping(str(tmp_path / "nope.json"))
