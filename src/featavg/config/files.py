"""Reading a ``--config`` file (TOML or YAML) as an untrusted input.

The file is opened only if it is a regular file (a FIFO would block the open, ``/dev/zero``
would never end), read up to :data:`MAX_FILE_BYTES`, decoded as UTF-8 and parsed with a safe
loader: YAML tags that build Python objects are refused by ``safe_load``, a key given twice
is refused (YAML would silently keep the last; TOML refuses it itself), and a YAML document
with more than :data:`MAX_ALIASES` aliases is refused before it is built. The result then
passes :func:`featavg.config.checks.check_input`, which bounds its expanded size (an alias
bomb of few aliases) and depth. Every failure is one :class:`ConfigError` line.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from featavg.config.text import MAX_DEPTH, ConfigError, shown

MAX_FILE_BYTES = 1 << 20  # 1 MiB: a config is a few hundred bytes
MAX_ALIASES = 100


class _SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys and bounds alias references."""

    aliases = 0
    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise ConfigError(f"more than {MAX_ALIASES} YAML aliases (*name)")
        # the composer recurses per level: stop long before Python's recursion limit
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH + 1:
                raise ConfigError(f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base` entries may be overridden: that is their point
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # unhashable: the base class says so with its position
                    break
                if duplicate:
                    line = key_node.start_mark.line + 1
                    raise ConfigError(f"line {line}: key {shown(key, 40)} given twice")
        return super().construct_mapping(node, deep=deep)


def _read(path: Path) -> bytes:
    """The bytes of a regular file of at most MAX_FILE_BYTES; ConfigError otherwise."""
    name = shown(str(path), 80)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ConfigError(f"--config: {name}: not a regular file (a directory or device?)")
        if path.suffix not in (".toml", ".yaml", ".yml"):
            raise ConfigError(f"--config: {name}: use a .toml, .yaml or .yml file")
        # O_NONBLOCK: should the path become a FIFO after the stat, opening does not block
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ConfigError(f"--config: {name}: not a regular file")
            if info.st_size > MAX_FILE_BYTES:
                raise ConfigError(
                    f"--config: {name}: {info.st_size} bytes; a config file has at most "
                    f"{MAX_FILE_BYTES}"
                )
            chunks, size = [], 0
            while size <= MAX_FILE_BYTES:  # the size may grow while we read
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        finally:
            os.close(fd)
    except ConfigError:
        raise
    except FileNotFoundError:
        raise ConfigError(f"--config: file not found: {name}") from None
    except (OSError, ValueError) as err:  # permissions, a name too long, a NUL byte...
        reason = errno.errorcode.get(getattr(err, "errno", None) or 0, type(err).__name__)
        raise ConfigError(f"--config: {name}: unreadable ({reason})") from None
    if size > MAX_FILE_BYTES:
        raise ConfigError(f"--config: {name}: larger than {MAX_FILE_BYTES} bytes")
    return b"".join(chunks)


def _yaml_message(err: yaml.YAMLError) -> str:
    """The problem and its line, not the context lines PyYAML puts first."""
    problem = getattr(err, "problem", None)
    mark = getattr(err, "problem_mark", None)
    if problem is None:
        return str(err)
    return f"line {mark.line + 1}: {problem}" if mark is not None else str(problem)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (.toml) or YAML (.yaml/.yml) config file with a safe loader; its top
    level must be a table. Raises :class:`ConfigError` (one line) on anything else."""
    import tomllib  # lazy: only config files need the parsers

    from featavg.config.checks import check_input

    if not isinstance(path, str | os.PathLike) or not str(path):
        raise ConfigError(f"--config: expected a file path, got {shown(path)}")
    path = Path(path)
    name = shown(str(path), 80)
    raw = _read(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"--config: {name}: not UTF-8 text") from None
    try:
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        else:
            loader = _SafeLoader(text)
            try:
                data = loader.get_single_data()
            finally:
                loader.dispose()
            data = {} if data is None else data
    except ConfigError as err:
        raise ConfigError(f"--config: {name}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"--config: {name}: {_yaml_message(err)}") from None
    except RecursionError:
        raise ConfigError(f"--config: {name}: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as err:  # TOMLDecodeError, an integer of thousands of digits
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"--config: {name}: {first}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {name}: the top level must be a table/mapping")
    try:
        check_input(None, data)
    except ConfigError as err:
        raise ConfigError(f"--config: {name}: {err}") from None
    return data
