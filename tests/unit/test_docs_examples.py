"""The examples of the docs run as written: a reader copies them, so they must work."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.cli.main import cli

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _blocks(text: str) -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", text, re.S)


def test_the_mapping_cases_of_docs_mappings_pass_with_its_first_mapping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/mappings.md: the `mappings test` cases, run against the page's first example as
    connector.yaml, print the output the page shows."""
    blocks = _blocks((DOCS / "mappings.md").read_text(encoding="utf-8"))
    (config,) = [b for b in blocks if b.startswith("mappings:\n  - topics: [usage.api]")]
    (cases,) = [b for b in blocks if b.startswith("- name: an API call")]
    (shown,) = [b for b in blocks if b.startswith("amberflo-connector mappings test")]
    command, *expected = shown.splitlines()
    (tmp_path / "connector.yaml").write_text(config)
    (tmp_path / "mapping-cases.yaml").write_text(cases)
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.startswith("CONNECTOR_")]:
        monkeypatch.delenv(key)
    result = CliRunner().invoke(cli, command.split()[1:])
    assert result.output.splitlines() == expected, result.output
    assert result.exit_code == 0
