"""The ``amberflo-connector`` command: the group, and ``main`` (the console script).

Every command turns a ``ConnectorError`` into one line on stderr and its exit code; a
traceback is shown only with ``--debug``.  Each command group lives in a module of its own.
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import click

from connector import __version__
from connector.cli import (
    config,
    customers,
    demo,
    dlq,
    emulator,
    mappings,
    meters,
    produce,
    reconcile,
    registry,
    run,
    s3,
    usage,
)
from connector.errors import ConnectorError, FatalError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="amberflo-connector")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Kafka → Amberflo usage-metering connector.

    Reads usage records from Kafka topics, turns each into Amberflo meter events with a
    deterministic uniqueId, delivers them to Amberflo's /ingest API and commits Kafka
    offsets only after delivery (or after the bad record is on the dead-letter topic).

    Configuration comes from CONNECTOR_* environment variables and/or a YAML file
    (--config); see docs/configuration.md.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


for command in (
    run.run,
    demo.demo,
    emulator.emulator,
    config.config,
    dlq.dlq,
    registry.schema_registry,
    produce.produce,
    reconcile.reconcile,
    mappings.mappings,
    meters.meters,
    customers.customers,
    usage.usage,
    s3.s3,
):
    cli.add_command(command)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: ``finally`` and ``with`` blocks run, so a command that
    started helpers (the demo's broker, emulator and connector) stops them.  Commands with
    their own graceful stop (``run``, the servers) install their own handler."""


def _terminated(signum: int, _frame: FrameType | None) -> None:
    raise Terminated(signum)


def _interruption(exc: BaseException) -> int | None:
    """The exit code of the Ctrl-C (130) or SIGTERM (143) behind ``exc``, or None.

    A signal handler's exception that lands while the main thread is inside certain C calls
    (an ``RLock.__enter__``, seen in rich's progress display) reaches Python as a
    ``SystemError`` whose cause is that exception; it is the same interruption, and the
    ``finally`` and ``with`` blocks it went through have run."""
    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, KeyboardInterrupt):
            return 128 + signal.SIGTERM if isinstance(cause, Terminated) else 130
        cause = cause.__cause__
    return None


_NO_ARGS_IS_HELP: type[click.UsageError] | tuple[()] = getattr(
    click.exceptions, "NoArgsIsHelpError", ()
)
"""What click (≥ 8.2) raises for ``amberflo-connector dlq`` alone; older versions print the
help themselves."""


def main() -> None:
    debug = "--debug" in sys.argv[1:]
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    signal.signal(signal.SIGTERM, _terminated)
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort as exc:  # click's name for a KeyboardInterrupt
        sys.exit(128 + signal.SIGTERM if isinstance(exc.__cause__, Terminated) else 130)
    except _NO_ARGS_IS_HELP as exc:  # a group called without a command: its help, as is
        exc.show()
        sys.exit(exc.exit_code)
    except click.UsageError as exc:  # one line, like every other configuration mistake
        where = exc.ctx.command_path if exc.ctx else "amberflo-connector"
        click.echo(f"{where}: {exc.format_message()} (see '{where} --help')", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConnectorError as exc:
        if debug:
            raise
        code = exc.exit_code if isinstance(exc, FatalError) else 1
        for line in str(exc).splitlines() or [type(exc).__name__]:
            click.echo(f"amberflo-connector: {line}", err=True)
        sys.exit(code)
    except Terminated:
        sys.exit(128 + signal.SIGTERM)
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemError as exc:
        interrupted = _interruption(exc)
        if interrupted is None:
            raise
        sys.exit(interrupted)
