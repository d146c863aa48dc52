"""pytest fixture: `apiserver`, a started APIServerDouble in the test's tmp_path, stopped after the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from . import APIServerDouble


@pytest.fixture
def apiserver(tmp_path: Path) -> Iterator[APIServerDouble]:
    srv = APIServerDouble(tmp_path / "apiserver")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
