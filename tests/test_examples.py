"""The example static pods shipped for users and the demo are valid as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.api.manifest import parse_manifest

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.yaml"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_parses_cleanly(path: Path) -> None:
    result = parse_manifest(path.read_bytes(), str(path))
    assert [str(e) for e in result.errors] == [] and result.warnings == []
    assert len(result.pods) == 1
