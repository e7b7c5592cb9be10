"""`python -m obsbox.samples`: run the sample shop on 127.0.0.1 (optionally with load), or serve one service.

    python -m obsbox.samples                          # all four, ports 8080-8083, until Ctrl-C
    python -m obsbox.samples --gateway-port 9080 --load 5 --duration 120
    python -m obsbox.samples serve payments --host 0.0.0.0 --port 8082   # what a container runs
    python -m obsbox.samples worker --port 8084       # the Celery fulfilment worker (needs OBSBOX_SAMPLES_REDIS_URL)

Telemetry goes where OTEL_EXPORTER_OTLP_ENDPOINT (or OBSBOX_ENDPOINT) says, else to the local default
(http://127.0.0.1:4318, the collector of `obsbox up`).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from types import FrameType

from obsbox.samples._services import SERVICES, WORKER_PORT


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m obsbox.samples", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, info in SERVICES.items():
        parser.add_argument(f"--{name}-port", type=int, default=info.default_port, metavar="PORT",
                            help=f"port of {name} ({info.framework}; default {info.default_port}, 0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--load", type=float, metavar="RPS", help="also run the load generator at RPS requests/s")
    parser.add_argument("--duration", type=float, default=60.0, metavar="S",
                        help="how long the load runs, in seconds (default 60); the shop keeps running after")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="serve one service in this process")
    serve.add_argument("service", choices=list(SERVICES))
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, help="default: the service's default port")
    serve.add_argument("--fd", type=int, help=argparse.SUPPRESS)  # a listening socket handed over by the shop
    serve.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    worker = sub.add_parser("worker", help="run the Celery fulfilment worker in this process (needs "
                                           "OBSBOX_SAMPLES_REDIS_URL), with /health and /metrics on --port")
    worker.add_argument("--host", default="127.0.0.1")
    worker.add_argument("--port", type=int, default=WORKER_PORT)
    worker.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    worker.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    return parser


def _run_shop(args: argparse.Namespace) -> int:
    from obsbox.samples import load, shop

    ports = {name: getattr(args, f"{name}_port") for name in SERVICES}

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # terminate = Ctrl-C: stop the children the same clean way
    try:
        running = shop.start(ports=ports, host=args.host)
    except (shop.ShopError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        for name, url in running.urls.items():
            print(f"{name:<10} {url:<28} {SERVICES[name].framework}", flush=True)
        print(f"faults:    python -c \"from obsbox.samples import faults; "
              f"faults.set_faults('{running.urls['payments']}', error_rate=0.4)\"\nCtrl-C stops the shop", flush=True)
        if args.load:
            summary = load.run(running.urls["gateway"], rps=args.load, duration=args.duration)
            print(summary.format(), flush=True)
        while all(running.alive().values()):
            time.sleep(0.5)
        dead = [name for name, alive in running.alive().items() if not alive]
        print(f"error: {', '.join(dead)} stopped unexpectedly", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        running.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from obsbox.samples._serve import serve

        port = args.port if args.port is not None else SERVICES[args.service].default_port
        serve(args.service, host=args.host, port=port, fd=args.fd, exit_with_parent=args.exit_with_parent)
        return 0
    if args.command == "worker":
        from obsbox.samples._serve import watch_parent
        from obsbox.samples.fulfilment import serve_worker

        if args.exit_with_parent:
            watch_parent()
        serve_worker(host=args.host, port=args.port, fd=args.fd)
        return 0
    return _run_shop(args)


if __name__ == "__main__":
    sys.exit(main())
