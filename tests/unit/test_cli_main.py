"""``main``: how an interruption ends the process, whatever C call the signal landed in."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator

import click
import pytest

from connector.cli.main import Terminated, cli, main


@pytest.fixture
def failing_command(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[BaseException]]:
    """A throwaway command that raises whatever the test puts in the list."""
    raised: list[BaseException] = []

    @click.command("raise-it")
    def raise_it() -> None:
        raise raised[0]

    cli.add_command(raise_it)
    monkeypatch.setattr(sys, "argv", ["amberflo-connector", "raise-it"])
    try:
        yield raised
    finally:
        cli.commands.pop("raise-it")


def _system_error_from(cause: BaseException) -> SystemError:
    # What CPython raises when a signal handler's exception is set inside a C call that then
    # returns a result (seen: RLock.__enter__ in rich's Live.stop during `demo`).
    try:
        raise SystemError("<built-in method __enter__> returned a result with an exception set")
    except SystemError as exc:
        exc.__cause__ = cause
        return exc


@pytest.mark.parametrize(
    ("cause", "code"),
    [(Terminated(signal.SIGTERM), 128 + signal.SIGTERM), (KeyboardInterrupt(), 130)],
)
def test_a_signal_surfacing_as_system_error_exits_like_the_signal(
    failing_command: list[BaseException], cause: BaseException, code: int
) -> None:
    failing_command.append(_system_error_from(cause))
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == code


def test_a_system_error_of_another_cause_is_not_taken_for_an_interruption(
    failing_command: list[BaseException],
) -> None:
    failing_command.append(_system_error_from(ValueError("no")))
    with pytest.raises(SystemError):
        main()


def test_sigterm_and_ctrl_c_exit_codes(failing_command: list[BaseException]) -> None:
    failing_command.append(Terminated(signal.SIGTERM))
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 128 + signal.SIGTERM


@pytest.mark.parametrize("args", [[], ["dlq"], ["customers"]])
def test_a_group_without_a_command_prints_its_help_unmangled(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["amberflo-connector", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code in (0, 2)
    out, err = capsys.readouterr()
    text = out + err
    assert text.startswith(f"Usage: amberflo-connector {' '.join(args)}".rstrip()), text
    assert "Commands:" in text and "(see '" not in text, text
