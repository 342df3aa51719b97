"""The native engine: virtkit's own VMM on /dev/kvm, one child process per machine.

The child is ``python -m virtkit.engines.native_main``; this side talks to it over its control socket
(:mod:`virtkit.ipc`) and reads its console log. Devices: virtio-console (the guest agent's port, bridged to agent.sock in the run directory) and
virtio-rng over virtio-pci; no disks or NICs yet.
"""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from virtkit import ipc
from virtkit.config import defaults
from virtkit.engines.base import (
    Availability,
    Capability,
    MachineBase,
    MachineStats,
    Technique,
    VmState,
    wait_for_agent,
)
from virtkit.errors import ConfigError, EngineError, GuestTimeout, HostError, IpcError, VirtkitError
from virtkit.host.probe import HostReport, probe
from virtkit.host.process import die_with_parent as _die_with_parent
from virtkit.host.process import python_child_env
from virtkit.machine.builder import preflight
from virtkit.machine.config import VmmConfig

if TYPE_CHECKING:
    from virtkit.agent.client import AgentClient
    from virtkit.config.machine import MachineSpec

# the VMM process's config document in the run directory
VMM_CONFIG = "vmm.json"


def vmm_config(spec: MachineSpec, agent_socket: Path | None = None) -> VmmConfig:
    """The native VMM's config for a resolved machine; ``agent_socket`` only when the machine has an agent."""
    if spec.boot.kernel is None:
        raise ConfigError(
            f"machine {spec.name}: the native engine boots kernels directly and has no firmware to boot a disk",
            hint="give boot.kernel (and initrd), or use --engine qemu for disk boot",
        )
    return VmmConfig(
        kernel=spec.boot.kernel,
        initrd=spec.boot.initrd,
        cmdline=spec.boot.cmdline,
        memory_mib=spec.memory_mib,
        vcpus=spec.vcpus,
        paravirt=spec.paravirt,
        agent_socket=agent_socket if spec.agent else None,
    )



CONTROL_TIMEOUT_S = 15.0


def native_availability(report: HostReport) -> Availability:
    """Whether the native engine runs unmodified guests here (VT-x/AMD-V), only PVM guest kernels, or nothing."""
    if report.kvm_hardware:
        return Availability(True, Technique.HARDWARE, report.hardware_reason())
    if report.kvm_pvm and report.kvm_api == 12:
        return Availability(
            False,
            Technique.PVM,
            "/dev/kvm is KVM-PVM (no VT-x/AMD-V here): the native engine boots only PVM-enabled guest kernels "
            "(and small test kernels, by emulation); unmodified Linux needs VT-x/AMD-V or nested virtualization",
        )
    return Availability(False, None, report.hardware_reason())


class NativeMachine(MachineBase):
    def __init__(self, name: str, technique: Technique, proc: subprocess.Popen[bytes], workdir: Path) -> None:
        self._name = name
        self._technique = technique
        self._proc = proc
        self.workdir = workdir
        self.control_socket = workdir / "control.sock"
        self._console_log = workdir / "console.log"
        self.vmm_log = workdir / "vmm.log"
        self.agent_socket = workdir / "agent.sock"

    @property
    def name(self) -> str:
        return self._name

    @property
    def engine(self) -> str:
        return "native"

    @property
    def technique(self) -> Technique:
        return self._technique

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc.poll() is None else None

    @property
    def console_log(self) -> Path:
        return self._console_log

    @property
    def console_socket(self) -> Path:
        return self.workdir / "console.sock"

    def request(self, op: str, **fields: object) -> dict[str, object]:
        """One control request to the VMM process; its result."""
        try:
            result = ipc.call(self.control_socket, op, fields, timeout=CONTROL_TIMEOUT_S, peer=f"{self._name}'s VMM")
        except IpcError as e:  # the transport failed, not the request
            raise EngineError(f"machine {self._name}: {e.message}", hint=f"see {self.vmm_log}") from e
        return dict(result) if isinstance(result, dict) else {}

    def _exited_state(self) -> VmState:
        return VmState.CRASHED if self._proc.returncode not in (0, -signal.SIGTERM) else VmState.SHUTOFF

    def status(self) -> VmState:
        if self._proc.poll() is not None:
            return self._exited_state()
        try:
            state = self.request("status").get("state")
        except EngineError:
            if self._proc.poll() is not None:
                return self._exited_state()
            raise
        return {
            "paused": VmState.PAUSED,
            "shut off": VmState.SHUTOFF,
            "crashed": VmState.CRASHED,
        }.get(str(state), VmState.RUNNING)

    def pause(self) -> None:
        self._alive("pause")
        self.request("pause")

    def resume(self) -> None:
        self._alive("resume")
        self.request("resume")

    def reboot(self) -> None:
        self._alive("reboot")
        self.request("reboot")

    def shutdown(self, timeout: float = 30.0) -> None:
        """Press the ACPI power button and wait for the guest to power off; after ``timeout`` (or at once when
        the machine has no ACPI) stop the VMM, and kill it if even that does not end it."""
        if self._proc.poll() is not None:
            return
        pressed = False
        with contextlib.suppress(EngineError):
            pressed = bool(self.request("powerdown").get("pressed"))
        if pressed:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout)
                return
        with contextlib.suppress(EngineError):
            self.request("stop")
        try:
            self._proc.wait(10.0)
        except subprocess.TimeoutExpired:
            self.destroy()

    def destroy(self) -> None:
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(5.0)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self._proc.kill()
                self._proc.wait()
        for path in (self.control_socket, self.console_socket):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def wait(self, timeout: float | None = None) -> VmState:
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.status()
        return self._exited_state()

    def agent(self) -> AgentClient:
        """A client on the VMM's agent socket (virtio-console port org.qemu.guest_agent.0)."""
        from virtkit.agent.client import AgentClient

        return AgentClient(self.agent_socket)

    def detach(self) -> None:
        """Nothing to let go of: every control request opens its own connection to the VMM's socket."""

    def wait_ready(self, timeout: float = defaults.READY_TIMEOUT_S) -> float:
        """Block until the guest agent answers; GuestTimeout with the console's last lines otherwise."""
        with self.agent() as agent:
            return wait_for_agent(self._name, agent, timeout, lambda: self._proc.poll() is None, self.console)

    def console(self) -> str:
        try:
            return self._console_log.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    # -- optional abilities ------------------------------------------------------------------
    def capabilities(self) -> frozenset[Capability]:
        return frozenset({Capability.CONSOLE_INPUT, Capability.STATS})

    def console_write(self, data: bytes) -> int:
        """Feed the UART as the guest drains it; returns the bytes it took within the VMM's patience."""
        self._alive("type into the console of")
        sent = self.request("input", data_b64=base64.b64encode(data).decode()).get("sent", 0)
        return int(sent) if isinstance(sent, int) else 0

    def stats(self) -> MachineStats:
        """VM exits by reason (this engine has no disks or NICs yet)."""
        self._alive("read the statistics of")
        exits = self.request("status").get("exits")
        counts = {str(k): int(v) for k, v in exits.items() if isinstance(v, int)} if isinstance(exits, dict) else {}
        return MachineStats(exits=counts)

    def _alive(self, what: str) -> None:
        if self._proc.poll() is not None:
            raise EngineError(f"machine {self._name} is not running; cannot {what} it", hint="start it first")


class NativeEngine:
    name = "native"

    def __init__(self, report: HostReport | None = None) -> None:
        self._report = report

    def _host(self) -> HostReport:
        if self._report is None:
            self._report = probe()
        return self._report

    def availability(self) -> Availability:
        return native_availability(self._host())

    def command(self, spec: MachineSpec, workdir: Path) -> list[str]:
        """Write the VMM process's one JSON document (``vmm.json`` in ``workdir``) and return its argv."""
        from virtkit.engines.native_main import VmmProcess

        process = VmmProcess(
            vmm=vmm_config(spec, agent_socket=workdir / "agent.sock"),
            console="none",
            console_log=workdir / "console.log",
            control=workdir / "control.sock",
            console_socket=workdir / "console.sock",
            stats_json=workdir / "stats.json",
        )
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / VMM_CONFIG
        path.write_text(json.dumps(process.to_json(), indent=2) + "\n")
        return [sys.executable, "-m", "virtkit.engines.native_main", str(path)]

    def start(self, spec: MachineSpec, workdir: Path, die_with_parent: bool = False) -> NativeMachine:
        if spec.disks or spec.nics:
            raise ConfigError(
                f"machine {spec.name}: the native engine has no disks or NICs yet (virtio-blk and virtio-net are still to come)",
                hint="boot from an initrd, or use --engine qemu",
            )
        preflight(vmm_config(spec))
        report = self._host()
        if report.kvm_api != 12:
            raise HostError(f"the native engine needs /dev/kvm: {report.hardware_reason()}")
        technique = Technique.HARDWARE if report.kvm_hardware else Technique.PVM
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "console.log").unlink(missing_ok=True)
        (workdir / "stats.json").unlink(missing_ok=True)
        with open(workdir / "vmm.log", "wb") as log:
            proc = subprocess.Popen(
                self.command(spec, workdir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=python_child_env(),
                start_new_session=True,
                preexec_fn=_die_with_parent if die_with_parent else None,
            )
        machine = NativeMachine(spec.name, technique, proc, workdir)
        try:
            self._wait_started(machine, proc)
        except BaseException:
            machine.destroy()
            raise
        return machine

    def _wait_started(self, machine: NativeMachine, proc: subprocess.Popen[bytes]) -> None:
        """Until the VMM answers on its control socket (not the guest agent: that is wait_ready())."""
        deadline = time.monotonic() + defaults.START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                if proc.returncode == 0:
                    return  # the guest already ran to its end (power-off or reset with --on-reset exit)
                raise self._failure(machine, proc.returncode)
            if machine.control_socket.exists():
                with contextlib.suppress(EngineError):
                    if machine.request("status").get("state") != "starting":
                        return
            time.sleep(0.02)
        raise GuestTimeout(
            f"machine {machine.name}: the native VMM did not start within {defaults.START_TIMEOUT_S:.0f} s",
            console_tail=machine.console()[-2000:],
            hint=f"see {machine.vmm_log}",
        )

    @staticmethod
    def _failure(machine: NativeMachine, returncode: int) -> Exception:
        """Why the VMM ended at start: the typed error it reported in its end report (the stats file),
        else the last line of its log."""
        error = _reported_error(machine.workdir / "stats.json")
        if error is not None:
            error.message = f"machine {machine.name}: {error.message}"
            return error
        lines = machine.vmm_log.read_text(errors="replace").strip().splitlines() if machine.vmm_log.exists() else []
        last = lines[-1].removeprefix("virtkit-native: ") if lines else f"exit status {returncode}"
        return EngineError(
            f"machine {machine.name}: the native VMM ended at start: {last}", hint=f"see {machine.vmm_log}"
        )


def _reported_error(path: Path) -> VirtkitError | None:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return ipc.decode_error(report["error"]) if isinstance(report, dict) and "error" in report else None
