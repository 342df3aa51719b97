from __future__ import annotations

import ast
from pathlib import Path

from virtkit.machine.console import TRUNCATED, ConsoleSink

SRC = Path(__file__).resolve().parents[3] / "src" / "virtkit"
# GUIDE: imports only go downward: machine -> virtio -> devices -> memory -> hypervisor (arch beside devices)
LAYERS = ["hypervisor", "memory", "arch", "devices", "virtio", "machine"]
ALWAYS_ALLOWED = {"errors", "ipc"}  # leaves: ipc.py imports only errors
# leaf modules every layer may use: policy constants that themselves import nothing from virtkit
ALWAYS_ALLOWED_MODULES = {"virtkit.config.defaults"}


def test_console_log_stops_at_its_cap_but_listeners_see_everything(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    sink = ConsoleSink(log, max_log_bytes=10)
    seen = bytearray()
    sink.add_listener(seen.extend)
    sink.write(b"0123456")
    sink.write(b"789abc")
    sink.write(b"more")
    sink.close()
    assert log.read_bytes() == b"0123456789" + TRUNCATED
    assert seen == b"0123456789abcmore"
    assert sink.first_byte.is_set() and sink.bytes_written == 17


def test_native_layers_import_only_downward() -> None:
    problems = []
    for rank, layer in enumerate(LAYERS):
        allowed = set(LAYERS[: rank + 1]) | ALWAYS_ALLOWED
        if layer in ("devices", "virtio"):
            allowed.discard("arch")  # devices know nothing of the boot protocol
        for path in (SRC / layer).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("virtkit."):
                    top = node.module.split(".")[1]
                    if top not in allowed and node.module not in ALWAYS_ALLOWED_MODULES:
                        problems.append(f"{path.relative_to(SRC)} imports {node.module}")
                elif isinstance(node, ast.ImportFrom) and node.module == "virtkit":  # from virtkit import ipc
                    problems += [f"{path.relative_to(SRC)} imports virtkit.{a.name}" for a in node.names
                                 if a.name not in allowed]  # fmt: skip
    assert not problems, problems


def test_always_allowed_modules_are_leaves() -> None:
    for module in ALWAYS_ALLOWED_MODULES:
        path = SRC.parent / (module.replace(".", "/") + ".py")
        tree = ast.parse(path.read_text())
        imports = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        assert not [m for m in imports if m.startswith("virtkit")], (module, imports)


def test_stream_writer_keeps_order_and_never_blocks_on_a_stalled_reader() -> None:
    import os
    import time

    from virtkit.machine.console import StreamWriter

    r, w = os.pipe()
    try:
        writer = StreamWriter(w, max_pending=8)
        started = time.monotonic()
        for _ in range(1000):  # nobody reads: the pipe fills, then the queue, then output is dropped
            writer(b"x" * 1024)
        assert time.monotonic() - started < 2.0
        assert writer.dropped > 0
    finally:
        os.close(r)
        writer.close(timeout=1)
        os.close(w)
    r, w = os.pipe()
    writer = StreamWriter(w)
    for i in range(100):
        writer(f"{i},".encode())
    writer.close()
    os.close(w)
    got = b""
    while chunk := os.read(r, 65536):
        got += chunk
    os.close(r)
    assert got == b"".join(f"{i},".encode() for i in range(100))
