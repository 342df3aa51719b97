"""Build a machine from a VmmConfig, one named step per stage of the boot sequence (after Firecracker's
builder.rs): check the host, map memory, create the VM, load the kernel, command line and initrd, describe
memory, attach devices, set up the vCPUs."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from pathlib import Path

from virtkit.arch.x86_64 import acpi, layout, regs
from virtkit.arch.x86_64.cpuid import guest_cpuid, paravirt_features
from virtkit.arch.x86_64.e820 import e820_map
from virtkit.arch.x86_64.loader import (
    Entry,
    Kernel,
    check_kernel_fits,
    encode_cmdline,
    initrd_address,
    load_kernel,
    place_initrd,
    read_kernel,
    write_boot_info,
)
from virtkit.config.defaults import AGENT_PORT_NAME
from virtkit.devices import acpi_pm, cmos, i8042, serial
from virtkit.devices.bus import Bus
from virtkit.devices.trigger import IrqLine
from virtkit.errors import ConfigError, HostError
from virtkit.hypervisor.base import Hypervisor, HypervisorError, Vm
from virtkit.machine.agent_socket import SocketBridge, listen
from virtkit.machine.config import Outcome, VmmConfig
from virtkit.machine.irqfd import MsiSender
from virtkit.machine.notifier import Notifier
from virtkit.machine.pci_devices import attach_pci, dsdt_aml
from virtkit.machine.vcpu import VcpuThread
from virtkit.machine.vmm import Vmm
from virtkit.memory import GuestMemory
from virtkit.virtio.console import Console, Port
from virtkit.virtio.device import VirtioDevice
from virtkit.virtio.rng import Rng

MIB = 1 << 20
MAX_VCPUS = 64  # APIC IDs fit the MADT's 8-bit fields; more would need x2APIC entries


def preflight(config: VmmConfig, mem_available_mib: int | None = None) -> tuple[Kernel, bytes]:
    """Every check on the user's input that needs no VM: memory, kernel, command line, initrd size.
    Returns the parsed kernel and the encoded command line."""
    check_memory(config.memory_mib, mem_available_mib)
    kernel = read_kernel(config.kernel)
    cmdline = encode_cmdline(kernel, config.cmdline)
    ram = layout.ram_layout(config.memory_mib * MIB)
    check_kernel_fits(kernel, ram[0][1], str(config.kernel))
    if config.initrd is not None:
        try:
            size = config.initrd.stat().st_size
        except OSError as e:
            raise ConfigError(
                f"cannot read initrd {config.initrd}: {e.strerror}", hint="pass an existing initrd file"
            ) from e
        initrd_address(kernel, size, ram[0][1], config.memory_mib * MIB, str(config.initrd))
    if not 1 <= config.vcpus <= MAX_VCPUS:
        raise ConfigError(
            f"the native engine runs 1 to {MAX_VCPUS} vCPUs (asked for {config.vcpus})",
            hint=f"give --vcpus between 1 and {MAX_VCPUS}",
        )
    return kernel, cmdline


def build(
    config: VmmConfig,
    hypervisor: Hypervisor,
    console: Callable[[bytes], None],
    mem_available_mib: int | None = None,
    agent: SocketBridge | None = None,
) -> Vmm:
    kernel, cmdline = preflight(config, mem_available_mib)
    initrd_data = read_initrd(config.initrd)
    memory = GuestMemory.anonymous(layout.ram_layout(config.memory_mib * MIB))
    vm: Vm | None = None
    vmm: Vmm | None = None
    try:
        vm = create_vm(hypervisor, memory)
        entry = load_guest(memory, kernel, cmdline, initrd_data, config)
        features = tuple(paravirt_features(guest_cpuid(hypervisor.supported_cpuid(), 0, 1, config.paravirt)))
        vmm = Vmm(vm, memory, Bus("pio", 0x10000), Bus("mmio", 1 << 48), entry.protocol, features)
        attach_devices(vmm, config, console)
        attach_virtio(vmm, config, console, agent)
        create_vcpus(vmm, hypervisor, config, entry)
        return vmm
    except BaseException:
        if vmm is not None:
            vmm.close()  # vCPUs, VM and memory
        else:
            if vm is not None:
                vm.close()
            memory.close()
        raise


def check_memory(memory_mib: int, available_mib: int | None) -> None:
    if memory_mib < layout.MIN_MEMORY // MIB:
        raise ConfigError(f"{memory_mib} MiB of memory is too little", hint="give at least 32 MiB")
    if available_mib is None:
        available_mib = host_available_mib()
    if memory_mib > available_mib:
        raise HostError(
            f"the machine wants {memory_mib} MiB of memory but the host has only {available_mib} MiB available",
            hint="give the machine less memory (--memory-mib) or free memory on the host",
        )


def host_available_mib(meminfo: Path = Path("/proc/meminfo")) -> int:
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // MIB


def read_initrd(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read initrd {path}: {e.strerror}", hint="pass an existing initrd file") from e


def create_vm(hypervisor: Hypervisor, memory: GuestMemory) -> Vm:
    vm = hypervisor.create_vm()
    try:
        for slot, region in enumerate(memory.regions):
            vm.map_memory(slot, region.guest_address, region.size, region.host_address)
        vm.create_irqchip()
        vm.create_pit()
    except HypervisorError:
        vm.close()
        raise
    return vm


def load_guest(
    memory: GuestMemory, kernel: Kernel, cmdline: bytes, initrd_data: bytes | None, config: VmmConfig
) -> Entry:
    load_kernel(memory, kernel, str(config.kernel))
    initrd = place_initrd(memory, kernel, initrd_data, str(config.initrd)) if initrd_data is not None else None
    ram = [(r.guest_address, r.size) for r in memory.regions]
    rsdp = 0
    if config.acpi:
        cpus = config.vcpus if config.vcpus > 1 else 0  # one vCPU keeps the 8259 set-up part 1 measured
        for address, data in acpi.acpi_tables(acpi_pm.PM1_EVT, acpi_pm.PM1_CNT, dsdt_aml(), cpus):
            memory.write(address, data)
        rsdp = acpi.RSDP_ADDRESS
    return write_boot_info(memory, kernel, cmdline, initrd, e820_map(ram), rsdp)


def attach_devices(vmm: Vmm, config: VmmConfig, console: Callable[[bytes], None]) -> None:
    """COM1, the CMOS stand-in, the i8042 (its reset line ends or restarts the machine) and, with ACPI, the
    PM1 registers (S5 powers off; the power button raises the SCI)."""
    vm, pio = vmm.vm, vmm.pio
    vmm.serial = serial.Serial(IrqLine(serial.IRQ_COM1, vm.set_irq_line), console)
    pio.insert(vmm.serial, serial.PORT_COM1, 8)
    pio.insert(cmos.Cmos(), cmos.PORT_BASE, cmos.PORT_LENGTH)
    pio.insert(i8042.I8042(lambda: vmm.finish(Outcome("reset", "i8042 reset"))), i8042.PORT_BASE, i8042.PORT_LENGTH)
    if config.acpi:
        sci = IrqLine(acpi.SCI_IRQ, vm.set_irq_line)
        pm = acpi_pm.AcpiPm(acpi.S5_SLP_TYP, lambda: vmm.finish(Outcome("poweroff", "ACPI S5")), sci)
        pio.insert(pm, acpi_pm.PORT_BASE, acpi_pm.PORT_LENGTH)
        vmm.power_button = pm.press_power_button


def virtio_devices(
    config: VmmConfig,
    console: Callable[[bytes], None],
    closers: list[Callable[[], None]],
    agent: SocketBridge | None = None,
) -> list[VirtioDevice]:
    """The virtio devices; what must be closed with the machine goes on ``closers``. ``agent``: a bridge the
    caller owns (the Runner keeps one across reboots); without one, the machine opens and closes its own."""
    devices: list[VirtioDevice] = []
    if config.agent_socket is not None:
        if agent is None:
            agent = listen(config.agent_socket)
            closers.append(agent.close)
        bridge = agent
        vcon = Console([Port(None, console), Port(AGENT_PORT_NAME, bridge.output, bridge.room)])
        bridge.deliver = functools.partial(vcon.input, 1)
        bridge.on_drain = functools.partial(vcon.resume_output, 1)
        closers.append(bridge.detach)  # between boots, client bytes go nowhere
        devices.append(vcon)
    if config.virtio_rng:
        devices.append(Rng())
    return devices


def attach_virtio(
    vmm: Vmm, config: VmmConfig, console: Callable[[bytes], None], agent: SocketBridge | None = None
) -> None:
    """The PCI root and the virtio devices, with ioeventfd notifications and irqfd MSIs. Their host-side
    backends go on ``vmm.closers`` as soon as they exist, so a failure later in the build closes them."""
    devices = virtio_devices(config, console, vmm.closers, agent)
    notifier = Notifier(vmm.vm) if devices and config.ioeventfd else None
    msi = MsiSender(vmm.vm) if devices and config.irqfd else None
    if msi is not None:
        vmm.closers.insert(0, msi.close)
    if notifier is not None:
        vmm.closers.insert(0, notifier.close)  # first: no device work may follow the irqfds' closing
    attach_pci(vmm.vm, vmm.memory, vmm.pio, vmm.mmio, devices, notifier, msi)


def create_vcpus(vmm: Vmm, hypervisor: Hypervisor, config: VmmConfig, entry: Entry) -> None:
    supported = hypervisor.supported_cpuid()
    for index in range(config.vcpus):
        vcpu = vmm.vm.create_vcpu(index)
        vmm.add_vcpu_thread(VcpuThread(vcpu, vmm.dispatcher, vmm.finish))  # from here on Vmm.close() closes it
        vcpu.set_cpuid(guest_cpuid(supported, index, config.vcpus, config.paravirt))
        with contextlib.suppress(HypervisorError):
            vcpu.set_msrs(regs.boot_msrs())  # KVM-PVM refuses some; the guest copes with reset values
        vcpu.reset_fpu()
        apic_base = vcpu.get_special_registers().apic_base
        vcpu.set_special_registers(regs.special_registers(entry.long_mode, apic_base))
        vcpu.set_registers(regs.entry_registers(entry.rip, rsi=entry.rsi, rbx=entry.rbx))
