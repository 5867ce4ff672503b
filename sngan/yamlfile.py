"""Reading a config file: YAML's safe loader made strict (no duplicate keys, no aliases), size-bounded, one line per
problem, and each YAML value coerced to its field's type and checked against its bounds (`coerce`, `check_value`).

The schema machinery is the same for configs and study plans: a section is a dataclass whose fields are declared
with `option` (help text, choices and bounds in the field's metadata), and `build_section` turns a YAML mapping into
one, refusing unknown keys (with a suggestion), wrong types and values out of bounds in one line each. Fields may be
lists, mappings, unions and nested sections. Imports nothing from the package but its errors."""

from __future__ import annotations

import dataclasses
import difflib
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


def read_yaml(path: str | Path, what: str = "config file",
              empty_hint: str = "start from a file in configs/ (an empty file would silently train the paper-size "
                                "defaults)") -> dict[str, Any]:
    """Read a non-empty YAML mapping from `path` (`StrictLoader`), turning every failure into a one-line ConfigError;
    `what` names the file in the 'not found' and 'empty' lines (a study plan is not a config file)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
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
        raise ConfigError(f"{path}: the {what} is empty; {empty_hint}")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(raw).__name__}")
    return raw


def option(default: Any, help: str, *, choices: typing.Iterable | None = None, ge: float | None = None,
           gt: float | None = None, le: float | None = None) -> Any:
    """A schema field with its help text and validation bounds kept in the dataclass metadata (bounds and choices
    apply to each element of a list or each value of a mapping)."""
    meta = {"help": help, "choices": choices, "ge": ge, "gt": gt, "le": le}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def suggest(name: str, valid: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def build_section(cls: type, raw: Any, prefix: str = "") -> Any:
    """An instance of the dataclass `cls` from the mapping `raw`: unknown keys refused, each value coerced to its
    field's type and checked against its bounds; `prefix` names the section in messages ('train' -> 'train.lr')."""
    where = prefix or "the top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{'key ' + repr(prefix) if prefix else where} must be a mapping of keys, got "
                          f"{type(raw).__name__} {shown(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in raw.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            raise ConfigError(f"unknown key '{dotted}'{suggest(str(key), fields)}")
        values[key] = coerce(value, hints[key], dotted)
    instance = cls(**values)
    for key, f in fields.items():
        check_value(getattr(instance, key), dict(f.metadata), f"{prefix}.{key}" if prefix else key)
    return instance


def _type_name(typ: Any) -> str:
    if dataclasses.is_dataclass(typ):
        return "a mapping"
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(typ) if a is not type(None))
    return getattr(origin or typ, "__name__", str(typ))


def coerce(value: Any, typ: Any, key: str) -> Any:
    """Convert a YAML value to a field's type (`typ`: a scalar, list, tuple, dict, union or nested section), or
    raise ConfigError naming the key."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(typ)):
            return None
        shaped = [a for a in args if isinstance(value, dict) and (dataclasses.is_dataclass(a) or typing.get_origin(a)
                                                                  is dict)
                  or isinstance(value, list) and typing.get_origin(a) in (list, tuple)]
        if shaped:  # a mapping or list meant for the member of that shape: its own message says what is wrong
            return coerce(value, shaped[0], key)
        for arg in args:
            try:
                return coerce(value, arg, key)
            except ConfigError:
                if len(args) == 1:
                    raise
        raise ConfigError(f"key '{key}' must be {_type_name(typ)}, got {type(value).__name__} {shown(value)}")
    if dataclasses.is_dataclass(typ):
        return build_section(typ, value, key)
    if origin in (list, tuple) and isinstance(value, list):
        item = typing.get_args(typ)[0]
        items = [coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict and isinstance(value, dict):
        item = typing.get_args(typ)[1]
        for name in value:
            if not isinstance(name, str):
                raise ConfigError(f"key '{key}': names must be strings, got {shown(name)}")
        return {name: coerce(v, item, f"{key}.{name}") for name, v in value.items()}
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
    raise ConfigError(f"key '{key}' must be {_type_name(typ)}, got {type(value).__name__} {shown(value)}")


def shown(value: Any, limit: int = 200) -> str:
    """repr(value) for an error message, capped at `limit` characters (a hostile value may be huge or nested deeper
    than repr can go)."""
    try:
        text = repr(value)
    except RecursionError:
        return f"<{type(value).__name__} nested too deeply to show>"
    return text if len(text) <= limit else text[:limit] + "..."


def check_value(value: Any, meta: dict, key: str) -> None:
    """Refuse a value outside its field's bounds (`meta`: choices, gt, ge, le) or a non-finite float; a list's
    elements and a mapping's values are checked one by one."""
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_value(item, meta, f"{key}[{i}]")
        return
    if isinstance(value, dict):
        for name, item in value.items():
            check_value(item, meta, f"{key}.{name}")
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"key '{key}' must be a finite number, got {shown(value)}")
    if value is None or isinstance(value, str) and not meta.get("choices"):
        return
    if meta.get("choices") is not None and value not in meta["choices"]:
        options = "|".join(str(c) for c in meta["choices"])
        raise ConfigError(f"key '{key}' must be one of {options}, got {shown(value)}")
    if dataclasses.is_dataclass(value):
        return
    if meta.get("gt") is not None and not value > meta["gt"]:
        raise ConfigError(f"key '{key}' must be > {meta['gt']}, got {shown(value)}")
    if meta.get("ge") is not None and not value >= meta["ge"]:
        raise ConfigError(f"key '{key}' must be >= {meta['ge']}, got {shown(value)}")
    if meta.get("le") is not None and not value <= meta["le"]:
        raise ConfigError(f"key '{key}' must be <= {meta['le']}, got {shown(value)}")
