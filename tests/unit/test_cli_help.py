"""Every command's --help: a whole one-line summary in its group's list, an example, and a
help text for every option (what a first-time user reads before anything else)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from connector.cli.main import cli


def _walk(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in sorted(group.commands.items()):
        found.append((*path, name))
        if isinstance(command, click.Group):
            found.extend(_walk(command, (*path, name)))
    return found


COMMANDS = _walk(cli)


def _get(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


def _help(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(cli, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.output


def test_the_top_level_help_lists_every_command() -> None:
    text = _help(())
    assert len(cli.commands) >= 13
    for name in cli.commands:
        assert f"\n  {name} " in text, name


@pytest.mark.parametrize(
    "path", [p for p in COMMANDS if not isinstance(_get(p), click.Group)], ids=" ".join
)
def test_every_command_shows_an_example_and_explains_every_option(path: tuple[str, ...]) -> None:
    text = _help(path)
    assert "Example" in text, text
    assert f"amberflo-connector {' '.join(path)}" in text.split("Example", 1)[1], text
    undocumented = [
        p.name
        for p in _get(path).params
        if isinstance(p, click.Option) and p.name != "help" and not p.help
    ]
    assert not undocumented, f"{' '.join(path)}: options without help: {undocumented}"


@pytest.mark.parametrize(
    "path",
    [()] + [p for p in COMMANDS if isinstance(_get(p), click.Group)],
    ids=lambda p: " ".join(p) or "amberflo-connector",
)
def test_command_lists_show_whole_summaries_in_80_columns(path: tuple[str, ...]) -> None:
    listing = _help(path).split("Commands:\n", 1)[1]
    cut = [line for line in listing.splitlines() if line.endswith("...")]
    assert not cut, cut
