"""Pydantic models for what comes in from outside; the boundary where bad input stops."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from lotrack.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any, what: str = "input") -> M:
    """Validate `data`; every field at fault is named in one error, not only the first."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(f"invalid {what}: {describe(exc)}") from None


def describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "value"
        message = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def load_toml(model: type[M], path: Path, what: str) -> M:
    """Read and validate a TOML settings file (specification, label template...)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(f"cannot read {what} {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{what} {path.name} is not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{what} {path.name} is not valid TOML: {exc}") from None
    return parse(model, data, f"{what} {path.name}")
