"""A virtio-pci function over test memory, driven register by register, and a fuzzer aimed at the device
status state machine rather than at random bytes: status sequences without resets, queue writes after
activation, rings at the edges of RAM, chains that hang or flood, host input racing guest resets.

Used by tests/unit/virtio (short seeded runs, the regression tests of issue 17) and bench/fuzz.py (>= 1 M
inputs). One *input* is one protocol step; every step is timed, and after each the invariants are checked:
no exception escapes, a broken device shows DEVICE_NEEDS_RESET, a device that serves has only sound queues,
and the status bits the driver set never go away without a reset.
"""

from __future__ import annotations

import random
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.support.memory import bytearray_memory
from virtkit.devices.trigger import RecordingTrigger
from virtkit.memory import GuestMemory
from virtkit.virtio import device as vd
from virtkit.virtio import msix, pci
from virtkit.virtio.common_config import Reg
from virtkit.virtio.console import VIRTIO_CONSOLE_F_MULTIPORT, Console, Port
from virtkit.virtio.device import VirtioDevice
from virtkit.virtio.queue import VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE
from virtkit.virtio.rng import Rng

BAR = 0xE0000000
MSI_ADDRESS = 0xFEE00000
DRIVER_BITS = vd.ACKNOWLEDGE | vd.DRIVER | vd.FEATURES_OK | vd.DRIVER_OK | vd.FAILED


class PciRig:
    """One virtio device behind a virtio-pci function, over bytearray guest memory of ``memory_size``."""

    def __init__(self, device: VirtioDevice, memory_size: int = 1 << 20) -> None:
        self.device = device
        self.mem: GuestMemory = bytearray_memory([(0, memory_size)])
        self.memory_size = memory_size
        device.memory = self.mem
        self.msis: list[tuple[int, int]] = []
        self.intx = RecordingTrigger()
        self.fn = pci.VirtioPci(device, BAR, lambda a, d: self.msis.append((a, d)), self.intx, 11)
        self.fn.config.write(4, 2, 0x6)  # memory decoding and bus mastering

    # --- registers ----------------------------------------------------------------------------------------

    def write(self, reg: Reg, value: int) -> None:
        self.fn.bar_write(
            0, pci.COMMON_OFFSET + reg.offset, (value & ((1 << 8 * reg.size) - 1)).to_bytes(reg.size, "little")
        )

    def read(self, reg: Reg) -> int:
        return int.from_bytes(self.fn.bar_read(0, pci.COMMON_OFFSET + reg.offset, reg.size), "little")

    @property
    def status(self) -> int:
        return self.read(Reg.DEVICE_STATUS)

    def notify(self, queue: int) -> None:
        self.fn.bar_write(0, pci.NOTIFY_OFFSET + pci.NOTIFY_MULTIPLIER * queue, struct.pack("<H", queue))

    def negotiate(self, features: int | None = None) -> None:
        """Reset, ACKNOWLEDGE | DRIVER, the features (all offered by default), FEATURES_OK."""
        features = self.device.features if features is None else features
        self.write(Reg.DEVICE_STATUS, 0)
        self.write(Reg.DEVICE_STATUS, vd.ACKNOWLEDGE | vd.DRIVER)
        for window in (0, 1):
            self.write(Reg.DRIVER_FEATURE_SELECT, window)
            self.write(Reg.DRIVER_FEATURE, features >> (32 * window))
        self.write(Reg.DEVICE_STATUS, vd.ACKNOWLEDGE | vd.DRIVER | vd.FEATURES_OK)

    def setup_queue(self, index: int, size: int, desc: int, avail: int, used: int, enable: bool = True) -> None:
        self.write(Reg.QUEUE_SELECT, index)
        self.write(Reg.QUEUE_SIZE, size)
        self.write(Reg.QUEUE_MSIX_VECTOR, 0)
        for lo, hi, address in (
            (Reg.QUEUE_DESC_LO, Reg.QUEUE_DESC_HI, desc),
            (Reg.QUEUE_DRIVER_LO, Reg.QUEUE_DRIVER_HI, avail),
            (Reg.QUEUE_DEVICE_LO, Reg.QUEUE_DEVICE_HI, used),
        ):
            self.write(lo, address & 0xFFFFFFFF)
            self.write(hi, address >> 32)
        if enable:
            self.write(Reg.QUEUE_ENABLE, 1)

    def driver_ok(self) -> None:
        self.write(Reg.DEVICE_STATUS, vd.ACKNOWLEDGE | vd.DRIVER | vd.FEATURES_OK | vd.DRIVER_OK)

    def enable_msix(self) -> None:
        self.fn.config.write(self.fn.msix_cap + 2, 2, msix.CONTROL_ENABLE)
        for v in range(self.fn.vectors):
            self.fn.msix.table[16 * v : 16 * v + 16] = struct.pack("<QII", MSI_ADDRESS, 0x40 + v, 0)

    # --- rings --------------------------------------------------------------------------------------------

    def desc(self, table: int, index: int, address: int, length: int, flags: int = 0, nxt: int = 0) -> None:
        self.mem.write(table + 16 * index, struct.pack("<QIHH", address, length, flags, nxt))

    def offer(self, avail: int, size: int, heads: list[int]) -> None:
        idx = self.mem.read_u16(avail + 2)
        for h in heads:
            self.mem.write_u16(avail + 4 + 2 * (idx % size), h)
            idx = (idx + 1) & 0xFFFF
        self.mem.write_u16(avail + 2, idx)

    def used_idx(self, used: int) -> int:
        return self.mem.read_u16(used + 2)


def rng_rig(memory_size: int = 1 << 20) -> PciRig:
    return PciRig(Rng(), memory_size)


@dataclass
class Sink:
    """A console port's host side whose room the test controls (a slow agent client)."""

    data: bytearray = field(default_factory=bytearray)
    room_left: int | None = None  # None: no limit

    def output(self, chunk: bytes) -> None:
        self.data += chunk
        if self.room_left is not None:
            self.room_left -= len(chunk)

    def room(self) -> int:
        return 1 << 30 if self.room_left is None else self.room_left


def console_rig(memory_size: int = 1 << 20) -> tuple[PciRig, Sink, Sink]:
    hvc, agent = Sink(), Sink()
    dev = Console([Port(None, hvc.output), Port("org.qemu.guest_agent.0", agent.output, agent.room)])
    return PciRig(dev, memory_size), hvc, agent


# --- the fuzzer --------------------------------------------------------------------------------------------


class InvariantBroken(AssertionError):
    pass


@dataclass
class Stats:
    inputs: int = 0
    worst_s: float = 0.0
    worst_op: str = ""
    needs_reset: int = 0  # steps that ended with the device flagged
    serving: int = 0  # steps that ended with the device serving its queues
    escaped: list[str] = field(default_factory=list)
    slow: list[str] = field(default_factory=list)  # steps over 1 s


SLOW_S = 1.0


class Fuzzer:
    """Seeded protocol-deviation generator for one target ("rng" or "console")."""

    def __init__(self, target: str, seed: int, memory_size: int = 1 << 20, session: int = 400) -> None:
        self.target = target
        self.rnd = random.Random(seed)
        self.memory_size = memory_size
        self.session = session
        self.stats = Stats()
        self._new_rig()

    def _new_rig(self) -> None:
        if self.target == "rng":
            self.rig = rng_rig(self.memory_size)
            self.agent: Sink | None = None
        else:
            self.rig, _, self.agent = console_rig(self.memory_size)
        self.rig.enable_msix()
        self.steps_in_session = 0
        self.driver_bits = 0  # what the driver set since the last reset, as the device must keep it
        self.layout: dict[int, tuple[int, int, int, int]] = {}  # queue -> (size, desc, avail, used)

    # --- generation ---------------------------------------------------------------------------------------

    def _address(self, length: int, align: int) -> int:
        return max(0, self._raw_address(length, align)) & ((1 << 64) - 1)

    def _raw_address(self, length: int, align: int) -> int:
        r, end = self.rnd, self.memory_size
        match r.randrange(8):
            case 0:
                return end - length  # the last bytes of RAM, exactly
            case 1:
                return end - length + r.choice((1, 2, 4, 8, 16))  # one past the edge
            case 2:
                return r.randrange(0, end, 1) | 1  # unaligned
            case 3:
                return r.choice((end, 1 << 32, (1 << 64) - 16, (1 << 63)))
            case _:
                return r.randrange(0, max(1, end - length - 0x1000), 0x1000) // align * align

    def _queue_size(self, index: int) -> int:
        r = self.rnd
        max_size = self.rig.device.queues[index].max_size
        return r.choice((max_size, max_size // 2, 16, 8, 1, 0, 3, 17, 0x11, 0xFFFF, max_size * 2, r.randrange(1 << 16)))

    def _step_status(self) -> str:
        r = self.rnd
        old = self.driver_bits
        match r.randrange(7):
            case 0:
                value = 0
            case 1:  # the next bit of a proper bring-up
                order = (vd.ACKNOWLEDGE, vd.DRIVER, vd.FEATURES_OK, vd.DRIVER_OK)
                value = old | next((b for b in order if not old & b), vd.DRIVER_OK)
            case 2:  # clear one bit without a reset
                value = old & ~r.choice((vd.ACKNOWLEDGE, vd.DRIVER, vd.FEATURES_OK, vd.DRIVER_OK)) or 1
            case 3:
                value = old | vd.FAILED
            case 4:
                value = 0xFF
            case 5:
                value = old | vd.DRIVER_OK  # DRIVER_OK, FEATURES_OK or not
            case _:
                value = r.randrange(256)
        self.rig.write(Reg.DEVICE_STATUS, value)
        return f"status<-{value:#04x}"

    def _step_features(self) -> str:
        r = self.rnd
        window = r.randrange(3)
        value = r.choice((self.rig.device.features >> (32 * window), 1, 0, r.getrandbits(32)))
        self.rig.write(Reg.DRIVER_FEATURE_SELECT, window)
        self.rig.write(Reg.DRIVER_FEATURE, value)
        return f"features[{window}]<-{value:#x}"

    def _step_queue_setup(self) -> str:
        r = self.rnd
        n = len(self.rig.device.queues)
        index = r.randrange(n + 1)  # one past the last: a queue that does not exist
        size = self._queue_size(index) if index < n else 16
        eff = size if 0 < size <= 0x8000 else 16
        if r.random() < 0.6:  # a sound layout
            base = 0x1000 + 0x4000 * (index % 8) * 4
            desc, avail, used = base, base + 16 * min(eff, 256) + 0x100 & ~0xF, base + 0x8000
            if r.random() < 0.3:  # the used ring ending exactly at the end of RAM
                used = self.memory_size - (6 + 8 * eff)
                used &= ~3
        else:
            desc, avail, used = (
                self._address(16 * eff, 16),
                self._address(6 + 2 * eff, 2),
                self._address(6 + 8 * eff, 4),
            )
        self.rig.setup_queue(index, size, desc, avail, used, enable=r.random() < 0.8)
        if index < n:
            self.layout[index] = (size, desc, avail, used)
        return f"queue{index} size={size} desc={desc:#x} avail={avail:#x} used={used:#x}"

    def _step_queue_poke(self) -> str:
        """One queue register written at any time, activated or not."""
        r = self.rnd
        reg = r.choice((Reg.QUEUE_SIZE, Reg.QUEUE_ENABLE, Reg.QUEUE_DESC_LO, Reg.QUEUE_DRIVER_LO, Reg.QUEUE_DEVICE_LO,
                        Reg.QUEUE_DEVICE_HI, Reg.QUEUE_MSIX_VECTOR, Reg.QUEUE_SELECT))  # fmt: skip
        value = r.choice((0, 1, 0x11, 0xFFFF, self.memory_size - 8, r.getrandbits(32)))
        self.rig.write(reg, value)
        return f"{reg.name}<-{value:#x}"

    def _step_chains(self) -> str:
        """Descriptors and avail entries for a queue whose layout we know: sound, hostile or flooding."""
        r = self.rnd
        if not self.layout:
            return self._step_queue_setup()
        index = r.choice(list(self.layout))
        size, desc, avail, _ = self.layout[index]
        size = size if 0 < size <= 256 else 16
        if not (self.rig.mem.contains(desc, 16 * size) and self.rig.mem.contains(avail, 4 + 2 * size)):
            return "chains: rings outside RAM"
        buf = 0x80000
        kind = r.randrange(6)
        heads: list[int]
        if kind == 0:  # well-formed, device-writable (rng) or readable (console tx) buffers
            writable = self.target == "rng" or index % 2 == 0
            flags = VIRTQ_DESC_F_WRITE if writable else 0
            for i in range(min(size, 8)):
                self.rig.desc(desc, i, buf + 64 * i, 64, flags)
            heads = list(range(min(size, 8)))
        elif kind == 1:  # the hang: every descriptor chained, zero-length, every avail entry naming head 0
            for i in range(size):
                self.rig.desc(
                    desc, i, buf, 0, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, (i + 1) % size if i + 1 < size else 0
                )
            self.rig.desc(desc, size - 1, buf, 0, VIRTQ_DESC_F_WRITE)
            heads = [0] * size
        elif kind == 2:  # buffers at and past the edge of RAM, lengths up to 16 MiB
            for i in range(min(size, 4)):
                length = r.choice((1, 64, 1 << 16, (1 << 24) - 16, (1 << 24) + 1))
                self.rig.desc(desc, i, self._address(length, 1), length, r.choice((0, VIRTQ_DESC_F_WRITE)))
            heads = list(range(min(size, 4)))
        elif kind == 3:  # indirect tables, loops and wild next indices
            for i in range(min(size, 4)):
                self.rig.desc(desc, i, r.choice((buf, self._address(64, 16))), r.choice((16, 48, 64, 0, 1 << 20)),
                              r.randrange(8), r.randrange(size + 4))  # fmt: skip
            heads = [r.randrange(size + 2) for _ in range(r.randrange(1, 4))]
        elif kind == 4:  # a large avail index jump
            self.rig.mem.write_u16(avail + 2, (self.rig.mem.read_u16(avail + 2) + r.randrange(size, 0x10000)) & 0xFFFF)
            heads = []
        else:  # console TX near the per-chain cap, many chains
            length = r.choice((1 << 18, (1 << 18) + 1, 1 << 17, 1 << 24))
            for i in range(size):
                self.rig.desc(desc, i, 0, min(length, self.memory_size), 0)
            heads = list(range(size))
        self.rig.offer(avail, size, heads)
        self.rig.notify(index)
        return f"chains kind={kind} queue{index}"

    def _step_host(self) -> str:
        """Host-initiated work: console input, a slow or recovering agent client, deferred turns."""
        r = self.rnd
        dev = self.rig.device
        if isinstance(dev, Console) and self.agent is not None:
            match r.randrange(4):
                case 0:
                    dev.input(r.randrange(2), r.randbytes(r.choice((1, 5, 200, 5000))))
                    return "input"
                case 1:
                    self.agent.room_left = r.choice((None, 0, 10, 1 << 20))
                    dev.resume_output(1)
                    return "agent room"
                case 2:  # PORT_OPEN for the agent port, through the control queue if it is set up
                    dev.ports[1].guest_open = True
                    dev.input(1, b"hello")
                    return "port open + input"
        dev.run_deferred()
        return "deferred"

    def _step_notify(self) -> str:
        index = self.rnd.randrange(len(self.rig.device.queues) + 2)
        self.rig.notify(index)
        return f"notify {index}"

    def _step_bar(self) -> str:
        r = self.rnd
        offset = r.choice((pci.MSIX_TABLE_OFFSET + 12, pci.ISR_OFFSET, pci.DEVICE_OFFSET, r.randrange(pci.BAR_SIZE)))
        size = r.choice((1, 2, 4, 8))
        self.rig.fn.bar_write(0, offset, r.randbytes(size))
        self.rig.fn.bar_read(0, r.randrange(pci.BAR_SIZE), size)
        return f"bar {offset:#x}/{size}"

    def _step_bring_up(self) -> str:
        """A proper driver start, so that the deviations after it meet an active device."""
        rig = self.rig
        rig.negotiate()
        self.driver_bits = 0  # negotiate starts with a reset
        self.layout.clear()
        for index, q in enumerate(rig.device.queues):
            base = 0x1000 + 0x4000 * index
            size = min(q.max_size, 16)
            rig.mem.write(base, bytes(0x2000))  # a driver starts on zeroed rings
            rig.setup_queue(index, size, base, base + 0x100, base + 0x1000)
            self.layout[index] = (size, base, base + 0x100, base + 0x1000)
        rig.driver_ok()
        return "bring-up"

    STEPS = (
        (_step_status, 8),
        (_step_features, 4),
        (_step_queue_setup, 10),
        (_step_queue_poke, 10),
        (_step_chains, 20),
        (_step_host, 12),
        (_step_notify, 8),
        (_step_bar, 4),
        (_step_bring_up, 6),
    )
    _FUNCS = [f for f, _ in STEPS]
    _WEIGHTS = [w for _, w in STEPS]

    # --- running and checking ----------------------------------------------------------------------------

    def step(self) -> None:
        if self.steps_in_session >= self.session:
            self._new_rig()
        self.steps_in_session += 1
        if not self.rig.device.serving and self.rnd.random() < 0.3:
            func = Fuzzer._step_bring_up  # a driver that recovers, so deviations meet live devices too
        else:
            (func,) = self.rnd.choices(self._FUNCS, self._WEIGHTS)
        started = time.perf_counter()
        try:
            what = func(self)
        except Exception as e:  # anything escaping the device is a finding
            self.stats.escaped.append(f"{self.target}: {type(e).__name__}: {e}")
            self._new_rig()
            return
        finally:
            elapsed = time.perf_counter() - started
            self.stats.inputs += 1
        if elapsed > self.stats.worst_s:
            self.stats.worst_s, self.stats.worst_op = elapsed, what
        if elapsed > SLOW_S:
            self.stats.slow.append(f"{self.target}: {what} took {elapsed:.2f} s")
        self._check(what)

    def _check(self, what: str) -> None:
        dev = self.rig.device
        status = dev.status
        driver = status & DRIVER_BITS
        if status == 0:
            self.driver_bits = 0
        elif self.driver_bits & ~driver:
            raise InvariantBroken(f"{what}: status bits {self.driver_bits & ~driver:#x} vanished without a reset")
        self.driver_bits = driver
        if dev.broken is not None:
            self.stats.needs_reset += 1
            if not status & vd.DEVICE_NEEDS_RESET:
                raise InvariantBroken(f"{what}: broken ({dev.broken}) without DEVICE_NEEDS_RESET")
        if dev.serving:
            self.stats.serving += 1
            if not status & vd.FEATURES_OK or status & vd.FAILED:
                raise InvariantBroken(f"{what}: serving with status {status:#x}")
            for i, q in enumerate(dev.queues):
                if q.ready:
                    try:
                        q.check(self.rig.mem)
                    except Exception as e:
                        raise InvariantBroken(f"{what}: serving queue {i}, which is unsound: {e}") from e

    def run(self, inputs: int) -> Stats:
        for _ in range(inputs):
            self.step()
        return self.stats


def race_input_with_resets(seconds: float, seed: int = 1) -> tuple[int, list[str]]:
    """A host thread feeds console input while the driver resets and re-activates the device over and over;
    returns (inputs fed, errors seen in either thread)."""
    rig, _, _ = console_rig()
    dev = rig.device
    assert isinstance(dev, Console)
    errors: list[str] = []
    stop = threading.Event()
    fed = 0

    def host() -> None:
        nonlocal fed
        rnd = random.Random(seed)
        while not stop.is_set():
            try:
                dev.input(1, rnd.randbytes(rnd.randrange(1, 300)))
                fed += 1
            except Exception as e:
                errors.append(f"host thread: {type(e).__name__}: {e}")
                return

    thread = threading.Thread(target=host, daemon=True)
    thread.start()
    rnd = random.Random(seed + 1)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            rig.negotiate(vd.VIRTIO_F_VERSION_1 | VIRTIO_CONSOLE_F_MULTIPORT)
            for index in range(len(dev.queues)):
                base = 0x1000 + 0x4000 * index
                used = rig.memory_size - 0x88 if rnd.random() < 0.2 and index == 4 else base + 0x1000
                rig.setup_queue(index, 16, base, base + 0x100, used)
            rig.driver_ok()
            dev.ports[1].guest_open = True
            rig.desc(0x1000 + 0x4000 * 4, 0, 0x80000, 64, VIRTQ_DESC_F_WRITE)
            rig.offer(0x1000 + 0x4000 * 4 + 0x100, 16, [0])
            rig.notify(4)
            if rnd.random() < 0.5:
                rig.write(Reg.DEVICE_STATUS, 0x0B)  # DRIVER_OK cleared without a reset
    except Exception as e:
        errors.append(f"driver thread: {type(e).__name__}: {e}")
    stop.set()
    thread.join(5)
    return fed, errors


TARGETS: dict[str, Callable[[int], Fuzzer]] = {
    "rng": lambda seed: Fuzzer("rng", seed),
    "console": lambda seed: Fuzzer("console", seed),
}
_ = VIRTQ_DESC_F_INDIRECT
