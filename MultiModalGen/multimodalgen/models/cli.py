"""Verb `models list`: shipped models and user adapters."""

from __future__ import annotations

import json


def add_parser(subparsers) -> None:
    models = subparsers.add_parser("models", help="list shipped models and user adapters")
    sub = models.add_subparsers(dest="models_command", metavar="ACTION")
    listing = sub.add_parser("list", help="list shipped models and user adapters")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=run_list)


def run_list(args, ctx) -> int:
    from multimodalgen.models.registry import list_models, shipped_models_dir, user_adapters_dir

    entries = list_models()
    if args.json or args.progress == "json":
        rows = [{"name": e.name, "kind": e.kind, "version": e.version, "path": str(e.path),
                 "size_bytes": e.size_bytes, "description": e.description, "default": e.is_default}
                for e in entries]
        print(json.dumps({"event": "result", "models": rows} if args.progress == "json" else rows, indent=None))
        return 0
    print(f"shipped models: {shipped_models_dir()}")
    print(f"user adapters:  {user_adapters_dir()}")
    if not entries:
        print("(none found)")
    for e in entries:
        name = f"{e.name} (default)" if e.is_default else e.name
        print(f"  {e.kind:<12} {name:<28} v{e.version:<8} {e.size_bytes / 1e6:7.2f} MB  {e.description}")
    return 0
