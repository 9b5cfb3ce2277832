"""Every guest command has a deadline: one that overruns is cut off in time and checked for a
guest hang, so a guest that deadlocks inside a command cannot hang the harness."""
from __future__ import annotations

import time

import pytest

from harness.errors import ChannelError, GuestHang
from harness.guest.initramfs import DEBUGFS_CTL

pytestmark = pytest.mark.guest


def test_an_overrunning_command_is_cut_off_and_the_guest_lives_on(ssh):
    started = time.monotonic()
    with pytest.raises(ChannelError, match="did not finish within 1 s"):
        ssh.run("sleep 30", timeout=1)
    assert time.monotonic() - started < 10  # the deadline plus one hang check, not 30 s
    assert ssh.run("echo still here", timeout=10).stdout.strip() == "still here"


def test_a_command_that_hangs_the_guest_is_a_guest_hang(ssh, guest, request):
    from harness.plugin.fixtures import BROKEN_KEY

    request.node.stash[BROKEN_KEY] = True  # whatever happens, the next test gets a fresh guest
    started = time.monotonic()
    with pytest.raises(GuestHang, match="every vCPU stuck"):
        ssh.run(f"echo 'trigger what=hang' > {DEBUGFS_CTL}", timeout=3)
    assert time.monotonic() - started < 20
