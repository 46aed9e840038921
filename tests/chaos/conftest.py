"""Fixtures of the chaos suite: a scenario's world (``chaos``), whose report row is written
when the test ends, with the test's outcome."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.harness import Chaos, Row


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def row(request: pytest.FixtureRequest) -> Row:
    """The scenario's report row; the test's docstring's first line is its title."""
    doc = (request.function.__doc__ or request.node.name).strip().split("\n\n")[0]
    doc = " ".join(doc.split())
    name = request.node.name.removeprefix("test_").replace("[", "-").rstrip("]")
    return Row(scenario=name, title=doc)


@pytest.fixture
def chaos(
    request: pytest.FixtureRequest,
    row: Row,
    kafka_broker: str,
    topic_factory: Callable[..., str],
    tmp_path: Path,
) -> Iterator[Callable[..., Chaos]]:
    made: list[Chaos] = []

    def make(**kwargs: Any) -> Chaos:
        c = Chaos(row, kafka_broker, topic_factory, tmp_path, **kwargs)
        made.append(c)
        return c

    yield make
    report = getattr(request.node, "rep_call", None)
    passed = bool(report is not None and report.passed)
    if report is not None and report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        row.notes.append(f"FAILED: {crash.message if crash else report.longreprtext[-300:]}")
    for c in made:
        c.close(passed)
    if not made:
        row.passed = passed
        row.save()
