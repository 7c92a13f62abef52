"""How a command starts: its configuration, its console logging, and the runner of the step CLIs.

Training scripts take one frozen dataclass, read from YAML/JSON plus --key=value:

    python -m training.stage1 training/configs/stage1.yaml --lr=3e-4 --steps=2000

Rules (nanoGPT's configurator, made strict):
* the file is optional; command-line overrides win over it;
* every key must be a field of the dataclass (a typo is an error that lists close matches);
* values are converted to the field's annotated type (bool, int, float, str, tuple[...],
  and ``X | None``) and a value that does not convert is an error naming the key;
* the dataclass's ``__post_init__`` then validates the combination.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import logging
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .data.errors import ConfigError, StyleExpertError

T = TypeVar("T")

def _convert(key: str, value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(key, value, inner[0])
        raise ConfigError(f"{key}: unsupported union type {annotation}.")
    if origin is tuple:
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else [v for v in text.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list (e.g. 1,2,3 or [1, 2, 3]), got {value!r}.")
        item_type = args[0] if args else str
        return tuple(_convert(key, v, item_type) for v in value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{key}: expected true/false, got {value!r}.")
    if annotation is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{key}: expected an integer, got {value!r}.")
        try:
            if not isinstance(value, str):
                return int(value)
            return int(float(value)) if "e" in value.lower() else int(value, 0)  # "1e4" or "0x10" / "42"
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {value!r}.") from None
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}.")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}.") from None
    if annotation is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected a string, got {value!r}.")
        return str(value)
    raise ConfigError(f"{key}: unsupported field type {annotation}.")


def _read_file(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} not found.")
    text = p.read_text()
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{p}: not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of option: value at the top level.")
    return data


def build_config(cls: type[T], values: dict[str, Any], source: str = "config") -> T:
    """Instantiate ``cls`` from raw values, converting types and rejecting unknown keys."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else f" Known options: {', '.join(names)}."
            raise ConfigError(f"{source}: unknown option '{key}'.{hint}")
        kwargs[key] = _convert(key, value, hints[key])
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{source}: {e}") from None


def parse_overrides(argv: list[str]) -> tuple[str | None, dict[str, str]]:
    """Split ``[config_file] --key=value --key value ...`` into the file and the overrides."""
    path, overrides = None, {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg.startswith("--"):
            key, eq, value = arg[2:].partition("=")
            if not eq:
                if not args or args[0].startswith("--"):
                    raise ConfigError(f"option '{arg}' needs a value: --{key}=VALUE or --{key} VALUE.")
                value = args.pop(0)
            overrides[key.replace("-", "_")] = value
        elif path is None:
            path = arg
        else:
            raise ConfigError(f"unexpected argument '{arg}': give one config file, then --key=value overrides.")
    return path, overrides


def load_config(cls: type[T], argv: list[str]) -> T:
    """``cls`` from an optional YAML/JSON file followed by --key=value overrides."""
    path, overrides = parse_overrides(argv)
    values = _read_file(path) if path else {}
    values.update(overrides)
    return build_config(cls, values, source=path or "command line")


def config_to_dict(config: Any) -> dict[str, Any]:
    """JSON-friendly dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def check(condition: bool, message: str) -> None:
    """For ``__post_init__`` validation: raise ConfigError(message) unless ``condition``."""
    if not condition:
        raise ConfigError(message)


def config_help(cls: type) -> str:
    """The options of a config dataclass with their defaults, for ``--help``."""
    doc = (sys.modules[cls.__module__].__doc__ or "").strip()
    lines = [doc, "", "usage: [config.yaml|config.json] --key=value ...", "", "options (default):"]
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        lines.append(f"  --{f.name}={default!r}" if default != "(required)" else f"  --{f.name}  (required)")
    return "\n".join(lines) + "\n"


def config_main(cls: type[T], run: Callable[[T], Any], argv: Sequence[str] | None = None) -> None:
    """Entry point of a config-driven command: ``--help`` lists the options, a user error is one
    line on stderr and exit 2 (no traceback), anything else propagates."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        sys.stdout.write(config_help(cls))
        raise SystemExit(0)
    setup_logging()
    try:
        run(load_config(cls, argv))
    except StyleExpertError as e:
        sys.stderr.write(f"error: {' '.join(str(e).split())}\n")
        raise SystemExit(2) from None


def setup_logging(level: int = logging.INFO) -> None:
    """Console logging for a training script; only entry points call it (libraries never configure logging)."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def run_cli(parser: argparse.ArgumentParser, runners: dict[str, Callable[[argparse.Namespace], dict[str, Any]]],
            argv: Sequence[str] | None) -> int:
    """The curate and evaluate CLIs: parse, run, print the JSON summary; user errors -> one line, exit 2."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        summary = runners[args.command](args)
    except (StyleExpertError, ImportError) as e:
        # ImportError covers optional extras (ray) whose message says what to install.
        message = " ".join(str(e).split())
        sys.stderr.write(f"error: {message}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted; re-run the same command to resume where supported\n")
        return 130
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0
