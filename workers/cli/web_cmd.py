"""``tradefleet web``: serve the operations console; ``web adduser|users|deluser``: its users.

- ``tradefleet web [--host H] [--port P]`` serves ``workers.web.create_app`` with uvicorn in
  this process. Refused (one line, exit 2) without ``TRADEFLEET_WEB_SECRET_KEY``, without any
  console user, or when the address cannot be listened on.
- ``tradefleet web adduser NAME --role viewer|operator [--update]`` reads the password from
  standard input: typed twice without echo at a terminal, else one line (piped). A user that
  exists is changed only with ``--update`` (its password and role).
- ``tradefleet web users`` lists names and roles (never a hash); ``tradefleet web deluser
  NAME`` removes one (its logins end at their next request).
"""

from __future__ import annotations

import getpass
import logging
import socket
import sys
from typing import Annotated

import typer
import uvicorn

from trading.exceptions import BadInput
from workers.connections import require_redis
from workers.db.engines import engine_for
from workers.db.user_rows import (
    add_user,
    check_name,
    check_role,
    count_users,
    delete_user,
    get_user,
    list_users,
    update_user,
)
from workers.settings import get_settings
from workers.web.app import create_app
from workers.web.passwords import MAX_LENGTH, check_new_password, hash_password

app = typer.Typer(
    help="The operations console: serve it, and its users.",
    invoke_without_command=True,
    no_args_is_help=False,
)

NO_KEY = (
    "TRADEFLEET_WEB_SECRET_KEY is not set: the console signs its logins with it "
    "(at least 32 random characters, the same for every console instance)"
)
NO_USER = (
    "no console user yet: add one with `tradefleet web adduser NAME --role operator` "
    "(the password is read from standard input)"
)


@app.callback()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65_535, help="Port.")] = 8000,
) -> None:
    """Serve the operations console (or manage its users: adduser, users, deluser)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = get_settings()
    if not settings.web.secret_key.get_secret_value():
        raise BadInput(NO_KEY)
    require_redis(settings).close()
    if count_users(engine_for(settings.sqlalchemy_url)) == 0:
        raise BadInput(NO_USER)
    listening = listen(host, port)
    logging.basicConfig(
        level=settings.log.level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_level=settings.log.level.lower(),
        proxy_headers=False,
        server_header=False,
    )
    uvicorn.Server(config).run(sockets=[listening])


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (uvicorn listens on it); ``BadInput`` if it cannot be."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def read_password(name: str) -> str:
    """The new password from standard input: at a terminal typed twice without echo, else
    exactly one line."""
    if sys.stdin.isatty():
        first = getpass.getpass(f"Password for {name}: ")
        check_new_password(first)
        if getpass.getpass("Again: ") != first:
            raise BadInput("the two passwords differ; nothing was changed")
        return first
    line = sys.stdin.readline(MAX_LENGTH + 2)
    password = line.removesuffix("\n").removesuffix("\r")
    if sys.stdin.read(1):
        raise BadInput("give the password as one line on standard input; nothing was changed")
    return check_new_password(password)


@app.command("adduser")
def adduser(
    name: Annotated[str, typer.Argument(help="The user's name.")],
    role: Annotated[str, typer.Option("--role", help="viewer (sees) or operator (also acts).")],
    update: Annotated[
        bool, typer.Option("--update", help="Change an existing user's password and role.")
    ] = False,
) -> None:
    """Add a console user (password from standard input); --update changes an existing one."""
    check_name(name)
    checked = check_role(role)
    engine = engine_for(get_settings().sqlalchemy_url)
    exists = get_user(engine, name) is not None
    if exists and not update:
        raise BadInput(f"console user {name} already exists (give --update to change it)")
    if update and not exists:
        raise BadInput(f"unknown console user: {name} (leave out --update to add it)")
    hashed = hash_password(read_password(name))
    if update:
        update_user(engine, name, checked, hashed)
        typer.echo(f"updated console user {name} ({checked})")
    else:
        add_user(engine, name, checked, hashed)
        typer.echo(f"added console user {name} ({checked})")


@app.command("users")
def users() -> None:
    """List the console's users and their roles."""
    rows = list_users(engine_for(get_settings().sqlalchemy_url))
    if not rows:
        typer.echo("no console users")
    for row in rows:
        typer.echo(f"{row.name}\t{row.role}")


@app.command("deluser")
def deluser(name: Annotated[str, typer.Argument(help="The user's name.")]) -> None:
    """Remove a console user; its logins end at their next request."""
    delete_user(engine_for(get_settings().sqlalchemy_url), name)
    typer.echo(f"deleted console user {name}")
