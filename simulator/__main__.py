"""`python -m simulator [--host 127.0.0.1] [--port 8090]`: serve the upstream simulator with
werkzeug's threaded server (threads matter: `timeout` and `latency` faults hold a thread)."""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
from types import FrameType
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server

from simulator.app import create_app

_SECRET_QUERY = re.compile(r"((?:access_token|signature)=)[^&\s]+")


class _RedactingRequestHandler(WSGIRequestHandler):
    """Werkzeug logs request lines with the query string; keep tokens out of the log."""

    def log(self, type: str, message: str, *args: Any) -> None:
        redacted = tuple(_SECRET_QUERY.sub(r"\1***", a) if isinstance(a, str) else a for a in args)
        super().log(type, message, *redacted)


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Turns SIGTERM into the same clean shutdown path as Ctrl-C.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)

    level = logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level)
    # werkzeug raises its own logger to INFO unless it has a level: --quiet must reach it too.
    logging.getLogger("werkzeug").setLevel(level)
    server = make_server(
        args.host, args.port, create_app(), threaded=True, request_handler=_RedactingRequestHandler
    )
    print(f"ucmha upstream simulator on http://{args.host}:{server.server_port}", flush=True)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
