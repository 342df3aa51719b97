from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from daemon_harness import FAKE, Daemon, running_daemon


@pytest.fixture
def home() -> Iterator[Path]:
    # short path: unix socket paths are limited to 107 bytes
    with tempfile.TemporaryDirectory(prefix="vkd-", dir="/tmp") as d:
        yield Path(d)


@pytest.fixture
def daemon(home: Path) -> Iterator[Daemon]:
    with running_daemon(home, FAKE) as d:
        yield d
