"""Verb `serve`: run the HTTP server that gives Slicer clients a remote (GPU) backend.

    multimodalgen [--device cuda] serve [--host 127.0.0.1] [--port 8765] --token T [--max-upload-mb 1024]
                                        [--max-jobs 1] [--max-sessions 4] [--session-ttl 900] [--workdir D]

The token comes from --token or MULTIMODALGEN_TOKEN. Binding to anything but loopback prints a warning: the
server speaks plain HTTP, so put it behind an SSH tunnel or a TLS reverse proxy when it leaves the machine.
"""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="run the remote backend server (HTTP, token required)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(handler=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1 = this machine only; 0.0.0.0 = all)")
    parser.add_argument("--port", type=int, default=8765, help="TCP port (default 8765)")
    parser.add_argument("--token", default=None,
                        help="access token clients must send, >= 8 characters; prefer $MULTIMODALGEN_TOKEN or "
                             "--token-file (a token on the command line is visible to other users in `ps`)")
    parser.add_argument("--token-file", default=None, help="file holding the access token (first line)")
    parser.add_argument("--max-upload-mb", type=float, default=1024.0, help="largest upload in MiB (default 1024)")
    parser.add_argument("--max-jobs", type=int, default=1, help="jobs running at once (default 1)")
    parser.add_argument("--max-sessions", type=int, default=4, help="open interactive sessions (default 4)")
    parser.add_argument("--session-ttl", type=float, default=900.0,
                        help="close interactive sessions idle this many seconds (default 900)")
    parser.add_argument("--job-ttl", type=float, default=3600.0,
                        help="delete finished jobs' files after this many seconds (default 3600)")
    parser.add_argument("--max-json-kb", type=float, default=256.0,
                        help="largest JSON request body in KiB (default 256)")
    parser.add_argument("--allow-selftest", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default=None, help="folder for uploads and outputs (default: a temp folder)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                        help="server log detail")


def config_from_args(args, device: str = "auto", threads: int | None = 0):
    from multimodalgen.server.config import ServerConfig, token_from

    return ServerConfig(token=token_from(args.token, args.token_file), host=args.host, port=args.port,
                        max_upload_mb=args.max_upload_mb, max_jobs=args.max_jobs, max_sessions=args.max_sessions,
                        session_ttl_s=args.session_ttl, job_ttl_s=args.job_ttl, workdir=args.workdir,
                        device=device, threads=int(threads or 0), max_json_kb=args.max_json_kb,
                        allow_selftest=args.allow_selftest)


def run(args, ctx) -> int:
    from multimodalgen.server.app import serve

    config = config_from_args(args, device=getattr(ctx, "device_name", "auto"), threads=getattr(ctx, "threads", 0))
    if args.token:
        print("multimodalgen: warning: a token given with --token is visible to other users of this machine "
              "(`ps`); use MULTIMODALGEN_TOKEN or --token-file", file=sys.stderr)
    if not config.is_loopback:
        print(f"multimodalgen: warning: listening on {config.host}: the server speaks plain HTTP; expose it only "
              "through an SSH tunnel or a TLS reverse proxy (patient data is uploaded)", file=sys.stderr)
    print(f"multimodalgen: serving on http://{config.host}:{config.port} (workdir {config.workdir}, "
          f"device {config.device})", file=sys.stderr)
    serve(config, log_level=args.log_level)
    return 0
