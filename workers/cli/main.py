"""Entry point of the ``tradefleet`` command: sub-commands, and one clear line on bad input.

Every refusal (bad input, a service that is not answering) prints one line on stderr and exits
with code 2; no traceback reaches the user.
"""

from __future__ import annotations

import sys

import redis
import typer
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError

from trading.exceptions import TradefleetError
from workers.cli import (
    account_cmd,
    bench_cmd,
    broker_cmd,
    db_cmd,
    demo_cmd,
    drill_cmd,
    events_cmd,
    feed_cmd,
    halt_cmd,
    reconcile_cmd,
    recover_cmd,
    risk_cmd,
    roll_cmd,
    session_cmd,
    web_cmd,
)

app = typer.Typer(
    name="tradefleet",
    help="Run many live futures-trading sessions on a Celery/Redis worker fleet.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db_cmd.app, name="db")
app.add_typer(session_cmd.app, name="session")
app.add_typer(feed_cmd.app, name="feed")
app.command("demo")(demo_cmd.demo)
app.command("bench")(bench_cmd.command)
app.command("drill")(drill_cmd.command)
app.command("drill-feed", hidden=True)(drill_cmd.drill_feed)
app.add_typer(reconcile_cmd.app, name="reconcile")
app.command("events")(events_cmd.events)
app.add_typer(broker_cmd.app, name="broker")
app.command("roll")(roll_cmd.roll)
app.command("recover")(recover_cmd.recover)
app.add_typer(account_cmd.app, name="account")
app.command("risk")(risk_cmd.risk)
app.command("halt")(halt_cmd.halt_command)
app.command("resume")(halt_cmd.resume_command)
app.command("wind-down")(halt_cmd.wind_down_command)
app.add_typer(web_cmd.app, name="web")


def fail(message: str) -> int:
    """Print ``message`` as the one error line and return the refusal exit code."""
    sys.stderr.write(f"tradefleet: {message}\n")
    return 2


def _missing_table(exc: SQLAlchemyError) -> bool:
    """True if ``exc`` says a table does not exist (the database was never migrated)."""
    if not isinstance(exc, OperationalError | ProgrammingError):
        return False
    cause = getattr(exc, "orig", None)
    return getattr(cause, "sqlstate", None) == "42P01" or "no such table" in str(cause)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 refused)."""
    try:
        result = app(args=argv, prog_name="tradefleet", standalone_mode=False)
    except typer.Abort:
        return fail("aborted")
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.TyperException as exc:
        message = " ".join(exc.format_message().split())
        return fail(message or "a command is required (see the usage above)")
    except TradefleetError as exc:
        return fail(str(exc))
    except SQLAlchemyError as exc:
        if _missing_table(exc):
            return fail("the database is not migrated: run `tradefleet db upgrade` first")
        cause = getattr(exc, "orig", None) or exc
        return fail("database error: " + str(cause).split("\n")[0])
    except redis.RedisError as exc:
        return fail(f"Redis error ({type(exc).__name__}): " + str(exc).split("\n")[0])
    return int(result) if isinstance(result, int) else 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())


if __name__ == "__main__":
    main()
