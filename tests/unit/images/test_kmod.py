from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from virtkit.errors import ImageError
from virtkit.images import kmod

# The shape of the Debian cloud kernel's virtio modules, as depmod would write it.
_V = "kernel/drivers/virtio/"
MODULES_DEP = (
    "\n".join(
        [
            f"{_V}virtio_ring.ko:",
            f"{_V}virtio.ko: {_V}virtio_ring.ko",
            f"{_V}virtio_pci_legacy_dev.ko:",
            f"{_V}virtio_pci_modern_dev.ko:",
            f"{_V}virtio_pci.ko: {_V}virtio_ring.ko {_V}virtio_pci_modern_dev.ko {_V}virtio_pci_legacy_dev.ko "
            f"{_V}virtio.ko",
            f"kernel/drivers/char/virtio_console.ko: {_V}virtio.ko {_V}virtio_ring.ko",
            "kernel/net/core/failover.ko:",
            "kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko",
            f"kernel/drivers/net/virtio_net.ko: {_V}virtio_ring.ko {_V}virtio.ko kernel/drivers/net/net_failover.ko",
            f"kernel/drivers/char/hw_random/virtio-rng.ko: {_V}virtio.ko {_V}virtio_ring.ko",
            "",
            "kernel/drivers/acpi/button.ko:",
        ]
    )
    + "\n"
)


def _assert_deps_first(order: list[kmod.Module]) -> None:
    seen: set[str] = set()
    for mod in order:
        assert set(mod.depends) <= seen, f"{mod.name} loaded before {set(mod.depends) - seen}"
        seen.add(mod.name)


def test_modules_dep_order() -> None:
    graph = kmod.parse_modules_dep(MODULES_DEP)
    order = kmod.load_order(graph, ["virtio_pci", "virtio_console", "virtio_net", "virtio-rng"])
    names = [m.name for m in order]
    _assert_deps_first(order)
    assert names[:5] == ["virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio", "virtio_pci"]
    assert set(names) == {
        "virtio_ring",
        "virtio",
        "virtio_pci_legacy_dev",
        "virtio_pci_modern_dev",
        "virtio_pci",
        "virtio_console",
        "failover",
        "net_failover",
        "virtio_net",
        "virtio_rng",
    }
    assert len(names) == len(set(names))  # each once, however many need it
    assert graph["virtio_rng"].path == "kernel/drivers/char/hw_random/virtio-rng.ko"  # dash kept in the file


def test_only_what_is_needed() -> None:
    order = kmod.load_order(kmod.parse_modules_dep(MODULES_DEP), ["virtio_console"])
    assert [m.name for m in order] == ["virtio_ring", "virtio", "virtio_console"]


def test_builtin_modules_are_skipped() -> None:
    graph = kmod.parse_modules_dep(MODULES_DEP)
    order = kmod.load_order(graph, ["virtio_net"], builtin={"virtio", "virtio_ring"})
    assert [m.name for m in order] == ["failover", "net_failover", "virtio_net"]


def test_missing_module_names_who_needs_it() -> None:
    graph = kmod.parse_modules_dep("kernel/a.ko: kernel/gone.ko\n")
    with pytest.raises(ImageError, match=r"'gone' not found \(needed by a\)"):
        kmod.load_order(graph, ["a"])
    with pytest.raises(ImageError, match="'nothere' not found"):
        kmod.load_order(graph, ["nothere"])


def test_cycle_is_an_error() -> None:
    graph = kmod.parse_modules_dep("kernel/a.ko: kernel/b.ko\nkernel/b.ko: kernel/a.ko\n")
    with pytest.raises(ImageError, match="cycle"):
        kmod.load_order(graph, ["a"])


def test_malformed_modules_dep_line() -> None:
    with pytest.raises(ImageError, match="line 2"):
        kmod.parse_modules_dep("kernel/a.ko:\nkernel/b.ko\n")


def _fake_module(path: Path, modinfo: str) -> None:
    """An ELF object with a .modinfo section, as the kernel build leaves in every .ko."""
    path.parent.mkdir(parents=True, exist_ok=True)
    src = path.with_suffix(".c")
    src.write_text(
        "".join(
            f'__attribute__((section(".modinfo"), used)) static const char m{i}[] = "{item}";\n'
            for i, item in enumerate(modinfo.split("\0"))
        )
    )
    subprocess.run(["gcc", "-c", "-o", str(path), str(src)], check=True)
    src.unlink()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to make ELF objects")
def test_graph_from_modinfo_without_modules_dep(tmp_path: Path) -> None:
    moddir = tmp_path / "lib" / "modules" / "6.1.0-test"
    _fake_module(moddir / "kernel/virtio/virtio_ring.ko", "depends=\0name=virtio_ring")
    _fake_module(moddir / "kernel/virtio/virtio.ko", "license=GPL\0depends=virtio_ring\0name=virtio")
    _fake_module(moddir / "kernel/hw_random/virtio-rng.ko", "depends=virtio,virtio_ring\0name=virtio_rng")
    (moddir / "modules.builtin").write_text("kernel/drivers/acpi/button.ko\n")
    graph = kmod.scan_modules(moddir)
    assert kmod.modinfo(moddir / "kernel/virtio/virtio.ko")["license"] == "GPL"
    order = kmod.load_order(graph, ["virtio-rng", "button"], kmod.builtin_modules(moddir))
    assert [(m.name, m.path) for m in order] == [
        ("virtio_ring", "kernel/virtio/virtio_ring.ko"),
        ("virtio", "kernel/virtio/virtio.ko"),
        ("virtio_rng", "kernel/hw_random/virtio-rng.ko"),
    ]


def test_modinfo_on_a_non_module(tmp_path: Path) -> None:
    exe = Path("/bin/true").resolve()
    with pytest.raises(ImageError, match=r"no \.modinfo"):
        kmod.modinfo(exe)
