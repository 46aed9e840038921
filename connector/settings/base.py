"""What every section of the configuration tree shares."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.config import JsonDict

REQUIRED_BY_RUN: JsonDict = {"required_by": "run"}
"""Marks a setting that ``run`` (and ``config check``) require and the dlq tools do not."""


class Section(BaseModel):
    """A section of the tree: an unknown key is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")
