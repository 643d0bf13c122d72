"""Wording of configuration problems: a TOML syntax error or a pydantic ValidationError → one line.

Private to katsched.config. Messages name the dotted key as the user wrote it (`catalogue.plugins[0].id`),
say what was expected in TOML terms (an integer number of seconds, an array, a table), and show the value
given, except for secret fields and passwords inside URLs.
"""

import difflib
import json
import re
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

REDACTED = "***"


def field_extra(info: FieldInfo) -> dict[str, Any]:
    """The json_schema_extra of a field: unit, secret, expects, example, default_from."""
    return info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}


def redact_url(value: str) -> str:
    """The URL with the password in it, if any, replaced by "***"."""
    scheme, sep, rest = value.partition("://")
    netloc, slash, path = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not (sep and at and colon and password):
        return value
    return f"{scheme}://{user}:{REDACTED}@{host}{slash}{path}"


def toml_problem(message: str) -> str:
    # tomllib of Python 3.11 puts the position only in its message: "Invalid value (at line 3, column 7)".
    match = re.fullmatch(r"(.*) \(at (line \d+, column \d+|end of document)\)", message, re.DOTALL)
    if match is None:
        return f"invalid TOML: {message}"
    return f"{match[2]}: invalid TOML: {match[1]}"


def describe(error: ValidationError, root: type[BaseModel]) -> str:
    """All problems of a ValidationError on one line; the alternatives of a union are merged per key."""
    grouped: dict[str, list[tuple[str, str]]] = {}
    for detail in error.errors():
        key, problem, got = _problem(detail, root)
        grouped.setdefault(key, []).append((problem, got))
    # A union such as `list[str] | str` reports every branch; an error inside an element is the useful one.
    keys = [key for key in grouped if not any(other.startswith(f"{key}[") for other in grouped)]
    parts = []
    for key in keys:
        problems = grouped[key]
        expected = [p.removeprefix("expected ") for p, _ in problems if p.startswith("expected ")]
        if len(expected) > 1:
            text = f"expected {' or '.join(dict.fromkeys(expected))}{problems[0][1]}"
        else:
            text = problems[0][0] + problems[0][1]
        parts.append(f"{key}: {text}" if key else text)
    return "; ".join(parts)


def _walk(
    loc: tuple[int | str, ...], root: type[BaseModel]
) -> tuple[str, type[BaseModel] | None, FieldInfo | None]:
    """The dotted key of a pydantic error location, the model that holds it, and its field."""
    key, parent, info = "", None, None
    model: type[BaseModel] | None = root
    for item in loc:
        if isinstance(item, int):
            key += f"[{item}]"
        elif model is not None:  # a field name, or an unknown key inside a model
            key = f"{key}.{item}" if key else item
            parent, info = model, model.model_fields.get(item)
            model = _model_in(info.annotation) if info else None
        # else: a union member tag such as "list[str]", not part of the key
    return key, parent, info


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


_EXPECTED = {
    "string_type": "a string",
    "bool_type": "true or false",
    "list_type": "an array",
    "model_type": "a table",
    "dict_type": "a table",
}


def _problem(detail: ErrorDetails, root: type[BaseModel]) -> tuple[str, str, str]:
    """(dotted key, what is wrong, ", got <value>" or "") for one pydantic error."""
    key, parent, info = _walk(detail["loc"], root)
    kind, ctx = detail["type"], detail.get("ctx", {})
    extra = field_extra(info) if info else {}
    got = "" if extra.get("secret") else f", got {_show(detail['input'])}"
    unit = extra.get("unit", "")
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return key, f"expected an integer{' number of ' + unit if unit else ''}", got
    if kind in _EXPECTED:
        return key, f"expected {_EXPECTED[kind]}", got
    if kind == "literal_error":
        return key, f"expected {str(ctx['expected']).replace(chr(39), chr(34))}", got
    if kind == "string_pattern_mismatch":
        return key, f"expected {extra.get('expects', 'a value matching ' + str(ctx['pattern']))}", got
    if kind == "extra_forbidden":
        return key, _unknown_key(key, parent, detail["input"]), ""
    simple = {
        "greater_than_equal": f"must be at least {ctx.get('ge')}",
        "less_than_equal": f"must be at most {ctx.get('le')}",
        "string_too_short": "must not be empty",
        "missing": "required key is missing",
    }
    if kind in simple:
        return key, simple[kind], "" if kind == "missing" else got
    return key, detail["msg"].removeprefix("Value error, "), ""


def _unknown_key(key: str, parent: type[BaseModel] | None, value: Any) -> str:
    what = "unknown section" if isinstance(value, dict) else "unknown key"
    name = key.rsplit(".", 1)[-1]
    known = list(parent.model_fields) if parent else []
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f'{what} (did you mean "{close[0]}"?)' if close else what


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    text = json.dumps(redact_url(value) if isinstance(value, str) else value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
