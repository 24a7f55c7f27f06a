"""How commands print their final result: a human line, or a JSON `result` event with `--progress json`."""

from __future__ import annotations

import json
import sys


def print_result(args, payload: dict, human: str) -> None:
    """Print `human` normally, or `{"event": "result", ...payload}` as one JSON line when `--progress json`."""
    if getattr(args, "progress", None) == "json":
        print(json.dumps({"event": "result", **payload}, default=str), flush=True)
    else:
        print(human, flush=True)


def run_verb_and_print(args, ctx, verb: str, params: dict, out, human=None) -> int:
    """The CLI's door to the verb registry: run `verb` with `params` writing to `out`, print the result, then each
    of `metrics["warnings"]` as a `warning:` line on stderr, and return exit code 0. The line printed is the verb's
    success sentence (`verbs.messages.success_sentence`: what was written where, the headline number), or
    `human(result)` when a command gives its own; with `--progress json` the full result as one JSON `result`
    event instead."""
    from multimodalgen.verbs import RunContext, run_verb
    from multimodalgen.verbs.messages import success_sentence

    result = run_verb(verb, params, out, RunContext(ctx.device_name, ctx.progress, None))
    payload = result.to_json()
    print_result(args, payload, human(result) if human else success_sentence(verb, result, out))
    for warning in result.metrics.get("warnings") or []:      # plausibility checks: never a silent wrong answer
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    return 0
