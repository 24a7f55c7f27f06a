"""Dataclass configs from JSON dicts: one check of the keys for every config class (adapters, pretraining,
personalized models)."""

from __future__ import annotations

import dataclasses
from typing import Any


def checked_fields(cls, data: dict[str, Any], what: str) -> dict[str, Any]:
    """A copy of `data` after checking that every key is a field of dataclass `cls`; ValueError naming the unknown
    and the known keys otherwise (configs are validated where they are read, never silently trimmed)."""
    data = dict(data)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {what} keys {sorted(unknown)}; known: {sorted(known)}")
    return data
