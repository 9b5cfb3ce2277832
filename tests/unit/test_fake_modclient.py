"""`ModuleClient` and `GuestTable` end to end on the host: one long-lived `sh` per client over
the fake SSH, batches of requests in one write, deadlines, the contract check, and a host walk
of the descriptors the fake module wrote into fake guest memory."""
from __future__ import annotations

import time

import pytest

from harness.errors import ChannelError, ContractViolation, GuestHang, ModuleError
from harness.guest.initramfs import DEBUGFS_CTL
from harness.guest.modclient import PROTOCOL, ModuleClient, Prot, req
from harness.pgtable.model import TableModel, compare
from harness.pgtable.tables import GuestTable
from tests.fakes.machine import FakeMachine

K4, M2 = 0x1000, 0x20_0000


@pytest.fixture
def machine(tmp_path):
    m = FakeMachine(tmp_path / "log").start()
    yield m
    m.stop()


@pytest.fixture
def client(machine):
    c = ModuleClient(machine.ssh, timeout=2.0)
    yield c
    c.close()


def test_one_shell_for_every_request(machine, client):
    for _ in range(3):
        assert client.version() == PROTOCOL
    assert len(machine.fake_ssh.channels) == 1
    assert client.shell("echo hello; echo world") == ["hello", "world"]


def test_a_batch_is_one_write_and_replies_match_in_order(machine, client):
    table = client.create().id
    chan = machine.fake_ssh.channels[0]
    writes_before = len(chan.written)
    requests = [req("map", id=table, iova=i * M2, paddr=0x8000_0000 + i * M2, pgsize=K4,
                    pgcount=i + 1, prot=Prot.READ) for i in range(8)]
    requests.append(req("iova_to_phys", id=table, iova=5 * M2 + 0x123))
    replies = client.batch(requests)
    assert len(chan.written) == writes_before + 1, "the batch must go out as one write"
    assert machine.module.batches[-1] == requests, "the module must see one batch of N lines"
    assert [r.index for r in replies] == list(range(9))
    assert [r.num("mapped") for r in replies[:8]] == [(i + 1) * K4 for i in range(8)]
    assert replies[8].verb == "iova_to_phys" and replies[8].num("phys") == 0x8000_0000 + 5 * M2 + 0x123


def test_ok_with_nothing_mapped_is_raised(machine, client):
    table = client.create().id
    machine.module.zero_progress = True
    with pytest.raises(ContractViolation, match="Ok with mapped == 0"):
        client.batch([req("list"), req("map", id=table, iova=0, paddr=0, pgsize=K4, pgcount=1,
                                       prot=Prot.READ)])


def test_a_missed_deadline_raises_and_calls_on_timeout(machine):
    called = []
    c = ModuleClient(machine.ssh, timeout=0.15, on_timeout=lambda: called.append(time.monotonic()))
    started = time.monotonic()
    with pytest.raises(ChannelError, match="no reply from the guest within"):
        c.request("trigger what=hang")
    assert len(called) == 1 and 0.15 <= called[0] - started < 2
    with pytest.raises(ChannelError):  # a late reply can never be taken for the next one's
        c.request("version")


def test_a_missed_deadline_on_a_hung_guest_is_a_guest_hang(machine):
    c = ModuleClient(machine.ssh, timeout=0.1, on_timeout=machine.raise_if_hung)
    with pytest.raises(GuestHang, match="every vCPU stuck"):
        c.request("trigger what=hang")


def test_a_crash_mid_request_is_a_closed_shell(machine, client):
    with pytest.raises(ChannelError, match="guest shell closed"):
        client.request("trigger what=panic")
    assert not machine.alive and "Kernel panic" in machine.console.tail()


def test_a_batch_the_module_cannot_parse_changes_nothing(machine, client):
    with pytest.raises(ModuleError, match=r"batch rejected .*status 1.*parse-error line=2"):
        client.batch(["version", "frobnicate id=0x1"])
    assert machine.module.batches == []
    with pytest.raises(ModuleError, match="outside the grammar"):
        client.batch(["version; reboot"])  # refused before anything is written


def test_a_missing_reply_is_reported(machine, client):
    machine.module.drop_replies = 1
    with pytest.raises(ModuleError, match="2 requests but 1 replies"):
        client.batch(["version", "list"])


def test_raw_reports_the_write_status(client):
    assert client.raw("version") == (0, [f"0 version ret=0 protocol={PROTOCOL}"])
    status, lines = client.raw("bogus")
    assert status != 0 and lines[0].startswith("parse-error line=1")


def test_shell_commands_the_fake_does_not_know_fail_loudly(machine, client):
    assert client.shell("insmod x.ko; echo $?") == ["127"]
    assert machine.fake_ssh.channels[0].shell.err[-1] == "sh: insmod: not found"
    assert client.shell(f"echo version > {DEBUGFS_CTL}; echo $?") == ["0"]


def guest_table(machine, client, **kw) -> GuestTable:
    return GuestTable(client, client.create(**kw), machine.memory, machine.qmp)


def test_host_walk_sees_what_the_module_mapped(machine, client):
    table = guest_table(machine, client)
    model = TableModel()
    first = table.map(0, 0x8000_0000, K4, 600, Prot.READ)  # io-pgtable-arm: one leaf table
    assert (first.ret, first.mapped) == (0, 512 * K4)
    rest = table.map(512 * K4, 0x8000_0000 + 512 * K4, K4, 88, Prot.READ)
    assert rest.mapped == 88 * K4
    assert table.map(0x4000_0000, 0x9000_0000, M2, 2, Prot.READ | Prot.WRITE).mapped == 2 * M2
    model.map(0, 0x8000_0000, K4, 600, int(Prot.READ))
    model.map(0x4000_0000, 0x9000_0000, M2, 2, int(Prot.READ | Prot.WRITE))
    pauses = machine.fake_qmp.pauses
    walk = table.walk()
    assert machine.fake_qmp.pauses == pauses + 1, "a walk reads while the vCPUs are stopped"
    assert compare(walk, model) == []
    assert walk.leaf_at(0x1000).desc.read_only and not walk.leaf_at(0x4000_0000).desc.read_only
    assert table.iova_to_phys(0x4000_0000 + 0x42) == 0x9000_0042


def test_unmap_of_consecutive_mappings_empties_the_table(machine, client):
    """DESIGN.md's example: map(0, 4K x 256); map(1M, 4K x 256); unmap(0, 2M x 1)."""
    table = guest_table(machine, client)
    table.map(0, 0x8000_0000, K4, 256)
    table.map(0x10_0000, 0x8010_0000, K4, 256)
    assert table.unmap(0, M2, 1) == M2
    assert table.walk().leaves == []
    with pytest.raises(ModuleError, match="not exactly covered"):
        table.unmap(0, M2, 1)
    table.destroy()
    assert client.list() == []


def test_the_pmemsave_reader_walks_the_same_table(machine, client, tmp_path):
    from harness.guest.guestmem import PmemsaveMemory
    from harness.pgtable.walker import walk

    table = guest_table(machine, client, pgsizes=0x02004000)  # 16K granule: 16K | 32M
    table.map(0x200_0000, 0x8000_0000, 0x4000, 3, Prot.READ | Prot.NOEXEC)
    info = table.info
    direct = walk(machine.memory, info.ttbr, table.granule, info.ias, info.mair)
    via_qmp = walk(PmemsaveMemory(machine.qmp, tmp_path, 0, 1 << 48), info.ttbr, table.granule, info.ias,
                   info.mair)
    assert direct.raw == via_qmp.raw and len(direct.leaves) == 3
    assert list(tmp_path.iterdir()) == [tmp_path / "log"], "pmemsave files are removed"


def test_record_pages_through_the_fake():
    from tests.fakes.module import FakeModule
    fake = FakeModule()
    ok, lines = fake.run_batch("create")
    assert ok
    for i in range(70):
        fake.run_batch(f"map id=1 iova={2 * i * 0x1000:#x} paddr=0 pgsize=0x1000 pgcount=1 prot=read")
    ok, first = fake.run_batch("record id=1")
    assert ok and "next=0x80000" in first[0]
    ok, rest = fake.run_batch("record id=1 start=0x80000")
    assert ok and "next=" not in rest[0] and rest[0].count(":") == 6 * 2


def test_bulky_batches_are_read_by_cat_and_small_ones_by_the_shell(machine, client):
    """`read` takes a byte per system call in the guest: a batch of many requests must be read
    back by `exec cat` in the writer's own subshell, and a small one by the shell itself (a
    fork costs more than a short reply)."""
    shell = client._chan.shell
    table = client.create().id
    before = len(shell.commands)
    replies = client.batch([req("info", id=table)] * 20)
    assert [r.num("id") for r in replies] == [table] * 20
    assert ["exec", "cat", DEBUGFS_CTL] in shell.commands[before:]
    before = len(shell.commands)
    assert client.version() == PROTOCOL
    assert ["exec", "cat", DEBUGFS_CTL] not in shell.commands[before:]
