"""``python -m tradovate_local --port 0 [--account NAME[:CASH]]... [--token-minutes M]
[--commission C] [--market-redis URL]``: start the local Tradovate server.

Users come from the environment (``TRADOVATE_LOCAL_USER``, ``_PASSWORD``, ``_CID``, ``_SEC``;
``TRADOVATE_LOCAL_CONTROL_TOKEN`` guards ``/_local/``), never from the command line. Prints
exactly one line, ``tradovate-local listening on http://127.0.0.1:<port>``, when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from decimal import Decimal, InvalidOperation

import tornado.httpserver
import tornado.ioloop
import tornado.netutil

from tradovate_local.app import Config, Server, make_app
from tradovate_local.auth import User
from tradovate_local.market import Batch, RedisTail

ENV = (
    "TRADOVATE_LOCAL_CONTROL_TOKEN",
    "TRADOVATE_LOCAL_USER",
    "TRADOVATE_LOCAL_PASSWORD",
    "TRADOVATE_LOCAL_CID",
    "TRADOVATE_LOCAL_SEC",
)
USER_ID = 1  # assumed: the one user's id


def _account(text: str) -> tuple[str, Decimal]:
    name, _, cash = text.partition(":")
    if not name:
        raise argparse.ArgumentTypeError("an account is NAME[:CASH]")
    try:
        amount = Decimal(cash or "100000")
    except InvalidOperation as exc:
        raise argparse.ArgumentTypeError(f"bad cash {cash!r}") from exc
    return name, amount


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation as exc:
        raise argparse.ArgumentTypeError(f"bad decimal {text!r}") from exc


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tradovate_local")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--account", type=_account, action="append", default=None)
    parser.add_argument("--token-minutes", type=float, default=90.0)
    parser.add_argument("--commission", type=_decimal, default=Decimal("2.50"))
    parser.add_argument("--market-redis", default=None, help="tail md:{SYMBOL}:ticks from here")
    parser.add_argument(
        "--market-redis-from", default="0", help="stream id to start from: 0 (all) or $ (new)"
    )
    parser.add_argument("--heartbeat-seconds", type=float, default=2.5)
    parser.add_argument("--client-timeout", type=float, default=10.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    missing = [name for name in ENV if not os.environ.get(name)]
    if missing:
        print(f"tradovate-local: set {', '.join(missing)}", file=sys.stderr)
        return 2
    env = {name: os.environ[name] for name in ENV}
    config = Config(
        control_token=env["TRADOVATE_LOCAL_CONTROL_TOKEN"],
        accounts=tuple(args.account or [("DEMO0001", Decimal("100000"))]),
        token_minutes=args.token_minutes,
        commission=args.commission,
        heartbeat_seconds=args.heartbeat_seconds,
        client_timeout=args.client_timeout,
    )
    user = User.create(
        USER_ID,
        env["TRADOVATE_LOCAL_USER"],
        env["TRADOVATE_LOCAL_PASSWORD"],
        env["TRADOVATE_LOCAL_CID"],
        env["TRADOVATE_LOCAL_SEC"],
    )
    del env
    return asyncio.run(_serve(args, config, user))


async def _serve(args: argparse.Namespace, config: Config, user: User) -> int:
    server = Server(config, user)
    sockets = tornado.netutil.bind_sockets(args.port, address="127.0.0.1")
    http = tornado.httpserver.HTTPServer(make_app(server))
    http.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    loop = tornado.ioloop.IOLoop.current()
    tail: RedisTail | None = None
    if args.market_redis:

        def deliver(batch: Batch) -> None:
            loop.add_callback(server.apply_ticks, batch)

        tail = RedisTail(args.market_redis, server.catalog, deliver, args.market_redis_from)
        tail.start()
    stop = asyncio.Event()
    aio = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        aio.add_signal_handler(sig, stop.set)
    print(f"tradovate-local listening on http://127.0.0.1:{port}", flush=True)
    await stop.wait()
    http.stop()
    server.drop_sockets()
    if tail is not None:
        tail.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
