"""Reading a config file: YAML's safe loader made strict (no duplicate keys, no aliases), size-bounded, one line per
problem, and each YAML value coerced to its field's type and checked against its bounds (`coerce`, `check_value`).
Used for configs and study plans; imports nothing from the package but its errors."""

from __future__ import annotations

import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from sngan.errors import ConfigError

MAX_CONFIG_BYTES = 1_048_576  # a config file is a page of YAML, not a data set
MAX_DEPTH = 32  # nesting levels (a config needs 3); deeper documents would exhaust Python's recursion limit


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses what a config never needs and a typo can cause: a key given twice in one mapping
    (PyYAML keeps the last silently) and aliases (`*name`, which also make 'billion laughs' documents possible)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise ConfigError(f"line {mark.line + 1}: YAML aliases (*name) are not allowed in a config; write the "
                              f"value out")
        self.depth = getattr(self, "depth", 0) + 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise ConfigError(f"line {mark.line + 1}: nested more than {MAX_DEPTH} levels deep; a config is "
                                  f"sections of keys")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable) and key in seen:
                raise ConfigError(f"key '{key}' is given twice (lines {seen[key]} and {line}); keep one")
            if isinstance(key, typing.Hashable):
                seen[key] = line
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a non-empty YAML mapping from `path` (`StrictLoader`), turning every failure into a one-line ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path.stat().st_size} bytes is too large for a config file (at most "
                              f"{MAX_CONFIG_BYTES})")  # the file is named once, by the handler below
        raw = yaml.load(path.read_text(), Loader=StrictLoader)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    if raw is None or raw == {}:
        raise ConfigError(f"{path}: the config file is empty; start from a file in configs/ (an empty file would "
                          f"silently train the paper-size defaults)")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(raw).__name__}")
    return raw


def coerce(value: Any, typ: Any, key: str) -> Any:
    """Convert a YAML value to a config field's type (`typ`), or raise ConfigError naming the key."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(typ)
        if value is None and type(None) in args:
            return None
        typ = next(a for a in args if a is not type(None))
    if typ is bool:
        if isinstance(value, bool):
            return value
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads "2e-4" as a string
            except ValueError:
                pass
    elif typ is str:
        if isinstance(value, str):
            if "\x00" in value:  # no path or name can hold one: the OS would refuse it later, mid-work
                raise ConfigError(f"key '{key}' must not contain a NUL byte, got {shown(value)}")
            return value
        if isinstance(value, bool):  # YAML 1.1 reads on/off as booleans
            return "on" if value else "off"
    raise ConfigError(f"key '{key}' must be {typ.__name__}, got {type(value).__name__} {shown(value)}")


def shown(value: Any, limit: int = 200) -> str:
    """repr(value) for an error message, capped at `limit` characters (a hostile value may be huge or nested deeper
    than repr can go)."""
    try:
        text = repr(value)
    except RecursionError:
        return f"<{type(value).__name__} nested too deeply to show>"
    return text if len(text) <= limit else text[:limit] + "..."


def check_value(value: Any, meta: dict, key: str) -> None:
    """Refuse a value outside its field's bounds (`meta`: choices, gt, ge, le) or a non-finite float."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"key '{key}' must be a finite number, got {shown(value)}")
    if meta.get("choices") is not None and value not in meta["choices"]:
        options = "|".join(str(c) for c in meta["choices"])
        raise ConfigError(f"key '{key}' must be one of {options}, got {shown(value)}")
    if meta.get("gt") is not None and not value > meta["gt"]:
        raise ConfigError(f"key '{key}' must be > {meta['gt']}, got {shown(value)}")
    if meta.get("ge") is not None and not value >= meta["ge"]:
        raise ConfigError(f"key '{key}' must be >= {meta['ge']}, got {shown(value)}")
    if meta.get("le") is not None and not value <= meta["le"]:
        raise ConfigError(f"key '{key}' must be <= {meta['le']}, got {shown(value)}")
