"""Debian's cloud kernel with the default image on the native engine, inside the nested L1: the guest finds
virtio-pci through the DSDT's PCI root, its agent answers over virtio-console, it sees 2 vCPUs from the
MADT and reads entropy from virtio-rng, and it powers off when the agent asks it to."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from tests.support import nested

pytestmark = pytest.mark.nested

SCRIPT = Path(__file__).resolve().parent / "l1_native_agent.py"
MARKER = "virtkit-l1-result: "


@pytest.mark.timeout(1200)
def test_default_image_reaches_agent_ready_on_the_native_engine(l1_ready: nested.BootArtefacts) -> None:
    from virtkit.images import build_image

    image = build_image("tiny")
    src = nested.checkout_src()
    res = nested.run_in_l1(
        [
            sys.executable,
            str(SCRIPT),
            str(image.kernel),
            str(image.initrd),
            "--engine",
            "native",
            "--pings",
            "5",
            "--cli",
        ],
        timeout=900,
        env={"PYTHONPATH": str(src)},
        visible=[src, SCRIPT.parent, image.kernel, image.initrd],
    )
    line = next((ln for ln in res.output.splitlines() if ln.startswith(MARKER)), None)
    assert line is not None, res.output[-4000:]
    result = json.loads(line.removeprefix(MARKER))
    print(json.dumps(result, indent=1))
    assert "error" not in result, result
    assert result["uname"] == {"exitcode": 0, "out": image.kernel_version, "err": ""}
    assert result["nproc"]["out"] == "2"
    assert result["rng_current"]["out"].startswith("virtio_rng")
    assert result["hwrng_bytes"]["out"] == "32"
    assert result["exit3"]["exitcode"] == 3  # exit codes come back through the agent
    assert len(result["ping_s"]) == 5
    assert result["final_state"] == "shut off"
    assert "ACPI S5" in result["vmm_log_tail"]
    # and `virtkit run --engine native` as a user types it: output, engine line, the guest's exit code
    cli = result["cli"]
    assert cli["rc"] == 3, cli
    assert cli["stdout"].splitlines() == [image.kernel_version, "2"], cli
    assert "engine: native  technique: hardware-assisted (KVM)  boot to agent-ready:" in cli["stderr"], cli
