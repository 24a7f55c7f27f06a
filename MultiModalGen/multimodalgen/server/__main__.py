"""``python -m multimodalgen.server [--device D] [--threads N] serve-options``: the server without the full CLI."""

from __future__ import annotations

import argparse
import sys
import types


def main(argv: list[str] | None = None) -> int:
    from multimodalgen.errors import UserInputError
    from multimodalgen.server.cli import add_arguments, run

    parser = argparse.ArgumentParser(prog="python -m multimodalgen.server")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args, types.SimpleNamespace(device_name=args.device, threads=args.threads))
    except UserInputError as exc:
        print(f"multimodalgen: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
