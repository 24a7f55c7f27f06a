"""Entry point of the `multimodalgen` command line.

Global options: `--device auto|cpu|cuda`, `--threads N`, `--progress bar|json|none`, `--debug`. Each capability
adds its verb from its own module (listed in `COMMAND_MODULES`), which exposes `add_parser(subparsers)` and sets
`handler=run` with `run(args, ctx) -> int`. A `UserInputError` prints one line on stderr and exits 2 (a traceback
only with `--debug`); cancellation (Ctrl-C) exits 130 without writing partial outputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys
import traceback

from multimodalgen import __version__
from multimodalgen.cli.verb_docs import HelpFormatter, epilog
from multimodalgen.errors import CancelledError, UserInputError
from multimodalgen.progress import MODES, Progress

#: Modules that add verbs. Add one line per capability.
COMMAND_MODULES = [
    "multimodalgen.cli.commands_io",
    "multimodalgen.models.cli",
    "multimodalgen.demo",
    "multimodalgen.server.cli",
    "multimodalgen.personalized.cli",
    "multimodalgen.batch.cli",
    "multimodalgen.encoder.cli",
    "multimodalgen.registration.cli",
    "multimodalgen.fewshot.cli",
]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130


@dataclasses.dataclass
class Context:
    """What every command receives besides its own arguments."""

    device_name: str
    threads: int | None
    progress: Progress
    debug: bool

    @property
    def device(self):
        """The `torch.device` to run on (resolved lazily so that light commands never import torch)."""
        from multimodalgen.device import resolve_device

        return resolve_device(self.device_name)


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line with exit code 2 (its own convention too)."""

    def error(self, message: str):  # noqa: D401
        self.exit(EXIT_USAGE, f"multimodalgen: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every registered verb."""
    parser = _Parser(prog="multimodalgen", description="MultiModalGen: multimodal registration and few-shot / "
                     "personalized segmentation on a contrast-invariant 3D foundation encoder.")
    parser.add_argument("--version", action="version", version=f"multimodalgen {__version__}")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all cores)")
    parser.add_argument("--progress", choices=MODES, default="bar",
                        help="bar (stderr), json (one JSON object per line on stdout: stage, fraction, message), none")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:  # each module imports only light code at parser build time
        importlib.import_module(name).add_parser(subparsers)
    for name, verb_parser in subparsers.choices.items():
        verb_parser.epilog = epilog(name) or verb_parser.epilog
        _use_help_formatter(verb_parser)
    return parser


def verb_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """{"register": its parser, "models list": ..., ...}: every verb's (and sub-verb's) parser under `parser`."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = sub
                found.update({f"{name} {k}": v for k, v in verb_parsers(sub).items()})
    return found


def _use_help_formatter(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = HelpFormatter  # keeps line breaks, shows defaults
    for sub in verb_parsers(parser).values():
        sub.formatter_class = HelpFormatter


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    As the program itself (the console script or ``python -m``: `argv` None) the process then ends at once with
    that code, stdout and stderr flushed: every output is written and closed by then, and Python's teardown of
    the imported modules (torch's above all) would add 0.3-0.5 CPU-s, 1-2 s on a busy machine, to every command.
    """
    code = _run(argv)
    if argv is None:
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """End the process with `code` without the interpreter's teardown (buffers flushed first)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed (e.g. a broken pipe): nothing left to flush
            pass
    os._exit(int(code))


def _run(argv: list[str] | None) -> int:
    # OpenMP threads that spin while waiting make torch many times slower on a shared, oversubscribed CPU; must be
    # set before torch is first imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    progress = Progress(args.progress if sys.stderr.isatty() or args.progress != "bar" else "none")
    ctx = Context(args.device, args.threads, progress, args.debug)
    try:
        if args.threads:
            from multimodalgen.device import set_threads

            set_threads(args.threads)
        return int(args.handler(args, ctx) or 0)
    except UserInputError as exc:
        return _report(args, exc, EXIT_USAGE)
    except (CancelledError, KeyboardInterrupt) as exc:
        return _report(args, CancelledError("cancelled; no partial outputs were written"), EXIT_CANCELLED, exc)
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        sys.stderr.close()
        return EXIT_OK
    except MemoryError as exc:
        return _report(args, UserInputError("out of memory", fix="crop or downsample the input, or use a "
                                             "machine with more memory"), EXIT_FAILURE, exc)
    except Exception as exc:  # an internal error: say so plainly
        if args.debug:
            traceback.print_exc()
        print(f"multimodalgen: internal error: {type(exc).__name__}: {exc} "
              "(rerun with --debug for the traceback and report it)", file=sys.stderr)
        if args.progress == "json":
            print(json.dumps({"event": "error", "kind": "internal", "message": f"{type(exc).__name__}: {exc}"}))
        return EXIT_FAILURE


def _report(args, error: BaseException, code: int, cause: BaseException | None = None) -> int:
    if args.debug:
        traceback.print_exception(cause or error)
    print(f"multimodalgen: error: {error}", file=sys.stderr)
    if args.progress == "json":
        kind = "cancelled" if code == EXIT_CANCELLED else "user" if code == EXIT_USAGE else "failure"
        print(json.dumps({"event": "error", "kind": kind, "message": str(error)}), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
