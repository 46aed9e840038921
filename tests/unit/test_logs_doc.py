"""CONNECTOR_LOG__LEVELS' description and docs/observability.md name every logger the
connector logs to: a level set for a logger nobody names is a guess."""

from __future__ import annotations

import re
from pathlib import Path

from connector.settings.operations import LogSettings

ROOT = Path(__file__).resolve().parents[2]


def test_every_connector_logger_is_named_in_the_docs() -> None:
    used = set()
    for path in (ROOT / "connector").rglob("*.py"):
        if "emulator" in path.parts:  # the emulator's loggers are not the connector's
            continue
        used |= set(re.findall(r'getLogger\("(connector(?:\.[a-z_]+)+)', path.read_text()))
    assert len(used) >= 8
    description = LogSettings.model_fields["levels"].description or ""
    doc = (ROOT / "docs" / "observability.md").read_text(encoding="utf-8")

    # A logger is named when it or a parent below `connector` is (connector.formats.avro is
    # connector.formats's child; its level follows the parent's).
    def named(name: str, text: str, quote: str = "") -> bool:
        parts = name.split(".")
        return any(f"{quote}{'.'.join(parts[:i])}{quote}" in text for i in range(2, len(parts) + 1))

    assert not sorted(n for n in used if not named(n, description))
    assert not sorted(n for n in used if not named(n, doc, "`"))
