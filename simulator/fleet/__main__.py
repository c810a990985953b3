"""`python -m simulator.fleet seed|run`: seed an organization with demo pairs, or run its nodes.

    echo "$ADMIN_TOKEN" | python -m simulator.fleet seed --api http://127.0.0.1:8000 --org demo --out var/fleet.json
    python -m simulator.fleet run --config var/fleet.json --control-port 8091
    python -m simulator.fleet load --config var/fleet.json --count 1000 --concurrency 16

The admin token is read from standard input so that it never shows in a process list.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from werkzeug.serving import make_server

from .control import create_control_app
from .fleet import Fleet, FleetConfig
from .pair import Timing
from .seed import SeedError, seed

log = logging.getLogger("simulator.fleet")


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM and SIGHUP take the same clean path as Ctrl-C


def cmd_seed(args: argparse.Namespace) -> int:
    token = sys.stdin.readline().strip()
    if not token:
        print("seed: no admin token on standard input", file=sys.stderr)
        return 2
    try:
        config = seed(args.api, token, args.org, fleet_api_url=args.fleet_api)
    except SeedError as exc:
        print(f"seed: {exc}", file=sys.stderr)
        return 1
    config.save(Path(args.out))
    print(f"seeded {len(config.pairs)} pairs in organization {args.org!r}: "
          + ", ".join(f"{p.pair_id} {p.name}" for p in config.pairs), flush=True)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    path = Path(args.config)
    try:
        config = FleetConfig.load(path)
    except (OSError, ValueError, KeyError) as exc:
        print(f"fleet: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    if args.api:
        config = FleetConfig(api_url=args.api, org=config.org, pairs=config.pairs)
    timing = Timing(status_interval_s=args.status_interval, first_failover_s=args.first_failover,
                    failover_interval_s=args.failover_interval, replay_interval_s=args.replay_interval)
    fleet = Fleet(config, timing)
    server = make_server(args.control_host, args.control_port, create_control_app(fleet), threaded=True)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)
    fleet.start(scheduled=args.schedule == "demo")
    print(f"ucmha node fleet: {len(config.pairs)} pairs posting to {config.api_url}; "
          f"control on http://{args.control_host}:{server.server_port}/_fleet/pairs", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        fleet.stop()
        fleet.current_config().save(path)
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    """Post N notifications concurrently from the fleet file's nodes and print the summary (JSON)."""
    config = FleetConfig.load(Path(args.config))
    if args.api:
        config = FleetConfig(api_url=args.api, org=config.org, pairs=config.pairs)
    fleet = Fleet(config)  # no runners started: only the nodes' identities and sequences are used
    try:
        summary = fleet.post_many(args.count, args.concurrency, args.type)
    finally:
        fleet.poster.close()
    print(json.dumps(summary.as_dict()), flush=True)
    return 0 if summary.delivered == summary.sent else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.fleet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)
    p_seed = sub.add_parser("seed", help="create demo pairs through the admin API and write the fleet file")
    p_seed.add_argument("--api", required=True, help="the service's base URL, e.g. http://127.0.0.1:8000")
    p_seed.add_argument("--org", default="demo", help="the organization the token belongs to (for the record)")
    p_seed.add_argument("--out", required=True, help="the fleet file to write (holds webhook secrets: 0600)")
    p_seed.add_argument("--fleet-api", default=None, help="the URL the nodes post to, if not --api")
    p_seed.set_defaults(func=cmd_seed)
    p_run = sub.add_parser("run", help="run the nodes of a fleet file")
    p_run.add_argument("--config", required=True)
    p_run.add_argument("--api", default=None, help="post to this base URL instead of the file's")
    p_run.add_argument("--control-host", default="127.0.0.1", help="keep it on loopback: no authentication")
    p_run.add_argument("--control-port", type=int, default=8091, help="0 picks a free port")
    p_run.add_argument("--schedule", choices=("demo", "none"), default="demo",
                       help="demo: each pair's scenario runs by itself; none: status reports and on-demand only")
    p_run.add_argument("--status-interval", type=float, default=Timing.status_interval_s)
    p_run.add_argument("--first-failover", type=float, default=Timing.first_failover_s)
    p_run.add_argument("--failover-interval", type=float, default=Timing.failover_interval_s)
    p_run.add_argument("--replay-interval", type=float, default=Timing.replay_interval_s)
    p_run.set_defaults(func=cmd_run)
    p_load = sub.add_parser("load", help="post N notifications concurrently (a load generator for benchmarks)")
    p_load.add_argument("--config", required=True)
    p_load.add_argument("--api", default=None)
    p_load.add_argument("--count", type=int, required=True)
    p_load.add_argument("--concurrency", type=int, default=8)
    p_load.add_argument("--type", default="ha.status", choices=("ha.status", "ha.backup", "ha.fault"))
    p_load.set_defaults(func=cmd_load)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="fleet %(levelname)s %(message)s")
    logging.getLogger("werkzeug").setLevel(max(logging.WARNING, logging.getLogger().level))
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
