"""Run identity: which directory a run of a config lives in.

By default a run lives in ``<root>/<kind>-<hash>/`` where the hash covers the effective
config, the package version and a fingerprint of the package source
(:func:`source_fingerprint`), so identical runs of identical code share a directory (a
cache hit) and anything else gets its own.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from featavg._version import __version__

DEFAULT_ROOT = Path("runs")


def fingerprint_tree(root: Path) -> str:
    """16 hex digits of sha256 over the relative path and bytes of every file under
    ``root``, bytecode (``__pycache__``, ``*.pyc``) and hidden names (editor files) left
    out: the Python modules, templates and data files that make the package's results."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if (
            not path.is_file()
            or path.suffix in {".pyc", ".pyo"}
            or any(part == "__pycache__" or part.startswith(".") for part in rel.parts)
        ):
            continue
        digest.update(rel.as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


@functools.cache
def source_fingerprint() -> str:
    """:func:`fingerprint_tree` of the installed ``featavg`` package, computed once per
    process (a few ms): any edit to the code that makes results gives another value."""
    return fingerprint_tree(Path(__file__).resolve().parent.parent)


def config_hash(experiment: str, config: dict[str, Any]) -> str:
    """12 hex digits over (experiment, config, package version, source fingerprint)."""
    blob = json.dumps(
        {
            "experiment": experiment,
            "config": config,
            "version": __version__,
            "source": source_fingerprint(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_dir(experiment: str, config: dict[str, Any], root: str | Path = DEFAULT_ROOT) -> Path:
    """The default run directory ``root/<experiment>-<hash>``."""
    return Path(root) / f"{experiment}-{config_hash(experiment, config)}"
