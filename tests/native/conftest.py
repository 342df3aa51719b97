"""Test kernels booted by the native VMM on this host's /dev/kvm (marker ``kvm``).

KVM-PVM hosts run them by instruction emulation at about a million instructions per second, so each boot
takes a fraction of a second; the kernels are built from tests/guests with the host gcc on first use.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

GUESTS = Path(__file__).resolve().parents[1] / "guests"
HERE = Path(__file__).resolve().parent
for extra in (GUESTS, HERE):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import guestkernels  # noqa: E402
from native_harness import Boot  # noqa: E402

from virtkit.hypervisor.kvm import Kvm  # noqa: E402
from virtkit.machine.config import VmmConfig  # noqa: E402
from virtkit.machine.console import ConsoleSink  # noqa: E402
from virtkit.machine.runner import Runner  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.kvm)


@pytest.fixture(scope="session")
def kvm() -> Kvm:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("/dev/kvm is not usable here")
    return Kvm()


@pytest.fixture(scope="session")
def test_kernels() -> dict[str, Path]:
    if shutil.which("gcc") is None or shutil.which("objcopy") is None:
        pytest.skip("gcc and binutils are needed to build the test kernels")
    return guestkernels.build()


@pytest.fixture
def boot(kvm: Kvm) -> Iterator[Callable[..., Boot]]:
    started: list[Boot] = []

    def start(kernel: Path, cmdline: str, initrd: Path | None = None, **config: object) -> Boot:
        console = ConsoleSink()
        runner = Runner(VmmConfig(kernel, initrd, cmdline, 64, **config), lambda: kvm, console)  # type: ignore[arg-type]
        b = Boot(runner)
        console.add_listener(b.out.extend)
        b.thread = threading.Thread(target=lambda: b.result.append(runner.run()), daemon=True)
        b.thread.start()
        started.append(b)
        return b

    yield start
    for b in started:
        b.runner.stop()
        if b.thread is not None:
            b.thread.join(10)
            assert not b.thread.is_alive(), "a machine did not stop"
