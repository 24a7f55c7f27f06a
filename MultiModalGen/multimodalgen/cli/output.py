"""How commands print their final result: a human line, or a JSON `result` event with `--progress json`."""

from __future__ import annotations

import json


def print_result(args, payload: dict, human: str) -> None:
    """Print `human` normally, or `{"event": "result", ...payload}` as one JSON line when `--progress json`."""
    if getattr(args, "progress", None) == "json":
        print(json.dumps({"event": "result", **payload}, default=str), flush=True)
    else:
        print(human, flush=True)
