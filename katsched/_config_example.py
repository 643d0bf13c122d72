"""The commented example configuration, rendered from the Settings model itself.

`katsched config init` writes it and `config.example.toml` is a copy of it, so the documented keys, defaults
and explanations cannot drift from what katsched accepts: the comments are the field descriptions, the
values the field defaults.
"""

import textwrap
from collections.abc import Mapping
from typing import Any

import tomli_w
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from katsched._config_errors import field_extra
from katsched.config import Settings

_WIDTH = 110
_HEADER = """\
# katsched configuration, written by `katsched config init`.
#
# Every key is shown with its default value, so a key you do not change can be deleted. katsched reads
# the file named by --config, else $KATSCHED_CONFIG, else /etc/katsched/config.toml, else ./config.toml.
# Check a file with `katsched config check --config PATH`; see the effective settings with
# `katsched config show --config PATH`. A relative SQLite path is relative to the directory of this file.
# Durations are whole seconds unless a comment says otherwise."""


def render_example(values: Mapping[str, Any] | None = None) -> str:
    """The example with every default; `values` ({"database.url": ...}) replaces some of them."""
    lines = _HEADER.splitlines()
    _render_table(Settings, "", lines, values or {})
    return "\n".join(lines) + "\n"


def _render_table(model: type[BaseModel], path: str, lines: list[str], values: Mapping[str, Any]) -> None:
    header_written = False
    for name, info in model.model_fields.items():
        nested = _model_of(info)
        if nested is not None:
            lines += ["", *_comment(info)]
            _render_table(nested, f"{path}.{name}" if path else name, lines, values)
            continue
        item = _list_item_model(info)
        if item is not None:
            lines += ["", *_comment(info)]
            _render_array_example(item, f"{path}.{name}", lines)
            continue
        if not header_written:
            lines.append(f"[{path}]")
            header_written = True
        else:
            lines.append("")
        lines += _comment(info)
        key = f"{path}.{name}"
        value = _assignment(
            name, values[key] if key in values else info.get_default(call_default_factory=True)
        )
        # A key that follows another one (reschedule_interval follows interval) stays commented out, so that
        # changing the one it follows keeps working.
        lines.append(f"# {value}" if field_extra(info).get("default_from") else value)


def _render_array_example(model: type[BaseModel], path: str, lines: list[str]) -> None:
    lines.append(f"# Each [[{path}]] table takes these keys:")
    for name, info in model.model_fields.items():
        required = " (required)" if info.is_required() else ""
        lines += _wrap(f"{name}{required}: {info.description}", "#   ", "#     ")
    lines += ["# For example:", f"# [[{path}]]"]
    for name, info in model.model_fields.items():
        extra = field_extra(info)
        example = extra["example"] if "example" in extra else info.get_default(call_default_factory=True)
        lines.append(f"# {_assignment(name, example)}")


def _assignment(name: str, value: Any) -> str:
    if isinstance(value, list):  # inline, where tomli_w would spread an array over several lines
        return f"{name} = [{', '.join(_value(item) for item in value)}]"
    return f"{name} = {_value(value)}"


def _value(value: Any) -> str:
    return tomli_w.dumps({"v": value}).removeprefix("v = ").rstrip("\n")


def _comment(info: FieldInfo) -> list[str]:
    return _wrap(info.description or "", "# ", "# ")


def _wrap(text: str, first: str, rest: str) -> list[str]:
    return textwrap.wrap(text, _WIDTH, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False)


def _model_of(info: FieldInfo) -> type[BaseModel] | None:
    annotation = info.annotation
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _list_item_model(info: FieldInfo) -> type[BaseModel] | None:
    args: tuple[Any, ...] = getattr(info.annotation, "__args__", ())
    if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        item: type[BaseModel] = args[0]
        return item
    return None
