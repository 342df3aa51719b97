from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.daemon import Daemon, running_daemon


@pytest.fixture
def home() -> Iterator[Path]:
    # short path: unix socket paths are limited to 107 bytes
    with tempfile.TemporaryDirectory(prefix="vkd-", dir="/tmp") as d:
        yield Path(d)


@pytest.fixture
def daemon(home: Path) -> Iterator[Daemon]:
    with running_daemon(home, fake=True) as d:
        yield d
