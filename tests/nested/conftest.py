from __future__ import annotations

import shutil

import pytest
from tests.support import nested


@pytest.fixture(scope="session")
def l1_ready() -> nested.BootArtefacts:
    """Build (or find cached) the L1 and L2 artefacts once; skip where QEMU cannot run here at all."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
    nested.l2_artefacts()
    return nested.l1_artefacts()
