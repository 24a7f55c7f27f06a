"""Fixtures of the personalized tests (helpers live in pers_helpers.py)."""

from pers_helpers import tiny_model_dir  # noqa: F401  (pytest fixture)
