"""Fixtures of this test area (shared helpers live in fewshot_helpers.py, imported by name: `conftest`
is ambiguous when several test folders have one)."""

from fewshot_helpers import *  # noqa: F401,F403  (fixtures)
