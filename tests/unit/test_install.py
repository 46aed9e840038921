"""The runtime install stays lean: what `run` and `dlq` need, not the emulator's web stack."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

PYPROJECT = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
WEB_STACK = ("fastapi", "uvicorn", "starlette")


def _names(requirements: list[str]) -> set[str]:
    return {r.split("[")[0].split(">")[0].split("=")[0].strip().lower() for r in requirements}


def test_the_web_stack_is_an_extra_not_a_dependency() -> None:
    project = PYPROJECT["project"]
    assert not _names(project["dependencies"]) & set(WEB_STACK)
    assert {"fastapi", "uvicorn"} <= _names(project["optional-dependencies"]["emulator"])
    assert {"fastapi", "uvicorn"} <= _names(project["optional-dependencies"]["demo"])


def test_run_and_dlq_never_import_the_web_stack() -> None:
    code = (
        "import sys\n"
        "for m in ('fastapi', 'uvicorn', 'starlette'): sys.modules[m] = None  # not installed\n"
        "import connector.cli.main, connector.cli.run, connector.cli.dlq, connector.cli.config\n"
        "import connector.pipeline.worker, connector.dlq.replay, connector.dlq.inspect\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_the_emulator_command_without_its_extra_says_what_to_install() -> None:
    code = (
        "import sys\n"
        "sys.modules['fastapi'] = None  # not installed\n"
        "sys.argv = ['amberflo-connector', 'emulator']\n"
        "from connector.cli import main\n"
        "main()\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        "amberflo-connector: the emulator needs its web stack (fastapi is missing): "
        "pip install 'amberflo-kafka-connector[emulator]'"
    ]
