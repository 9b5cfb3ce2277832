"""The guest a test session shares: booted on first use, replaced after a crash or hang, and
never booted again once a boot has failed (later tests are skipped with that reason instead).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from ..build.pipeline import Prepared
from ..errors import BootFailedEarlier, HarnessError
from .machine import Machine
from .modclient import PROTOCOL, ModuleClient

MachineFactory = Callable[[Prepared, Path, int], Machine]  # (build, log directory, vCPUs)


def boot_machine(prepared: Prepared, log_dir: Path, vcpus: int = 1) -> Machine:
    return Machine(prepared.build, prepared.root, log_dir=log_dir, smp=vcpus).start()


class GuestManager:
    """Owns the session's guest of `vcpus` vCPUs; boots a new one when the last one died."""

    def __init__(self, prepared: Prepared, log_root: Path,
                 factory: MachineFactory = boot_machine, vcpus: int = 1) -> None:
        self.prepared = prepared
        self.log_root = log_root
        self.factory = factory
        self.vcpus = vcpus
        self.machine: Machine | None = None
        self.boots = 0
        self.boot_error: BaseException | None = None
        self.record: dict[str, Any] = {}
        self._client: ModuleClient | None = None  # the module client tests share, see client()

    def get(self) -> Machine:
        """The live guest, booting one if needed; BootFailedEarlier once a boot has failed."""
        if self.machine is not None and not self.machine.alive:
            self.machine.stop()
            self.machine = None
        if self.machine is None:
            if self.boot_error is not None:
                first = (str(self.boot_error).splitlines() or [type(self.boot_error).__name__])[0]
                raise BootFailedEarlier(f"guest failed to boot earlier: {first} (the first test "
                                        "that needed it has the whole report)", self.boot_error)
            self.boots += 1
            try:
                self.machine = self.factory(self.prepared, self.log_root / f"boot-{self.boots}",
                                             self.vcpus)
            except Exception as exc:  # any failure to boot is remembered, not only ours
                self.boot_error = exc
                raise
            self._record_provenance(self.machine)
        return self.machine

    def client(self, timeout: float, on_timeout: Callable[[], None] | None) -> ModuleClient:
        """The module client of the live guest, reused from test to test (a new guest shell
        and its protocol check cost ~50 ms under TCG): a fresh one when the guest was
        replaced, when the last one missed a deadline, or ran a test's own shell script."""
        machine = self.get()
        client = self._client
        if client is not None and (not client.reusable or client.machine is not machine):
            client.close()
            client = None
        if client is None:
            client = ModuleClient(machine.require_ssh(), timeout=timeout, on_timeout=on_timeout)
            client.machine = machine
            if client.version() != PROTOCOL:
                client.close()
                raise HarnessError(f"guest module speaks protocol {client.version()}, "
                                   f"harness expects {PROTOCOL}")
        client.retime(timeout, on_timeout)
        self._client = client
        return client

    def discard_client(self) -> None:
        """After a failed test: its client may be mid-conversation; the next one starts fresh."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _record_provenance(self, machine: Machine) -> None:
        """results/provenance.json: what was tested, with what, on which QEMU command line."""
        assert machine.info is not None
        self.record = dict(self.prepared.build.provenance(), guest_release=machine.info.release,
                           qemu_argv=machine.info.qemu_argv, boots=self.boots, vcpus=self.vcpus,
                           boot_seconds=round(machine.info.seconds_to_ready, 2),
                           ssh_port=machine.info.ssh_port, run_dir=str(machine.rundir),
                           shm=str(machine.spec.shm_path) if machine.spec else "",
                           guest_up_since=time.time())
        self._write_provenance()

    def _write_provenance(self) -> None:
        self.log_root.mkdir(parents=True, exist_ok=True)
        (self.log_root / "provenance.json").write_text(json.dumps(self.record, indent=1) + "\n")

    def healthy(self) -> bool:
        """Alive and the module still answers (a hung request holds its lock forever)."""
        machine = self.machine
        if machine is None or not machine.alive or machine.ssh is None:
            return False
        try:
            client = ModuleClient(machine.ssh, timeout=15)
            try:
                return client.version() == PROTOCOL
            finally:
                client.close()
        except HarnessError:
            return False

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.machine is not None:
            self.machine.stop()
            self.machine = None
            self.record["guest_down_at"] = time.time()
            self._write_provenance()


class GuestPool:
    """A session's guests, one per vCPU count a test asks for. Most tests get a guest of one
    vCPU: under TCG a second vCPU costs far more than it gives to a test with one guest process
    at a time (broadcast TLB invalidations stop every vCPU thread; a lock holder's thread
    descheduled by an overcommitted host leaves the other vCPU spinning), and on 2 host cores
    the whole suite ran in about half the CPU time with one vCPU per guest. Tests of truly
    concurrent guest processes ask for two, and share a guest of two booted on first use."""

    def __init__(self, prepared: Prepared, log_root: Path,
                 factory: MachineFactory = boot_machine) -> None:
        self.prepared, self.log_root, self.factory = prepared, log_root, factory
        self.managers: dict[int, GuestManager] = {}

    def manager(self, vcpus: int = 1) -> GuestManager:
        """The guest manager for `vcpus` (its logs in the pool's directory for one vCPU, else
        in `<n>-vcpus/` under it)."""
        if vcpus < 1:
            raise HarnessError(f"a guest needs at least one vCPU, not {vcpus}")
        if vcpus not in self.managers:
            log_root = self.log_root if vcpus == 1 else self.log_root / f"{vcpus}-vcpus"
            self.managers[vcpus] = GuestManager(self.prepared, log_root, self.factory, vcpus)
        return self.managers[vcpus]

    def close(self) -> None:
        for manager in self.managers.values():
            manager.close()
