from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from virtkit.config import defaults
from virtkit.engines.qemu import QemuEngine, QemuMachine
from virtkit.oneshot import spec_for

pytestmark = pytest.mark.integration


@pytest.fixture
def boot(tiny_image: object, tmp_path: Path) -> Iterator[Callable[..., QemuMachine]]:
    """Start machines from the default image; every one is destroyed at the end of the test."""
    started: list[QemuMachine] = []

    def start(name: str = "it", **kw: object) -> QemuMachine:
        spec = spec_for(tiny_image.kernel, tiny_image.initrd, name=name, **kw)  # type: ignore[attr-defined,arg-type]
        m = QemuEngine().start(spec, tmp_path / name, die_with_parent=True)
        started.append(m)
        m.wait_ready(defaults.READY_TIMEOUT_S)
        return m

    yield start
    for m in started:
        m.destroy()
