"""The files a machine makes on the host: guest RAM created exclusively in a private directory,
and a stale sweep that survives whatever it finds."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from harness.guest import machine
from harness.guest.machine import create_shared_ram, remove_shared_ram, sweep_stale


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    tmp, shm = tmp_path / "tmp", tmp_path / "shm"
    tmp.mkdir()
    shm.mkdir()
    monkeypatch.setattr(machine.tempfile, "gettempdir", lambda: str(tmp))
    monkeypatch.setattr(machine, "SHM_DIR", str(shm))
    return tmp, shm


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_guest_ram_is_private_and_made_exclusively(dirs: tuple[Path, Path]) -> None:
    path = create_shared_ram(1 << 20)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_size == 1 << 20
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.parent.parent == dirs[1] and path.parent.name.startswith(f"iopt-hil-{os.getpid()}-")
    other = create_shared_ram(4096)
    assert other.parent != path.parent  # a fresh directory each time: no name to guess
    for p in (path, other):
        remove_shared_ram(p)
        assert not p.parent.exists()


def test_sweep_survives_dangling_links_vanished_and_foreign_entries(dirs: tuple[Path, Path]) -> None:
    tmp, shm = dirs
    dead = dead_pid()
    stale_run = tmp / "iopt-hil-run-stale"
    stale_run.mkdir()
    (stale_run / "owner").write_text(str(dead))
    live_run = tmp / "iopt-hil-run-live"
    live_run.mkdir()
    (live_run / "owner").write_text(str(os.getpid()))
    (tmp / "iopt-hil-run-dangling").symlink_to(tmp / "nowhere")
    (shm / f"iopt-hil-{dead}-old").mkdir()
    (shm / f"iopt-hil-{dead}-old" / "ram").write_bytes(b"x")
    (shm / f"iopt-hil-{dead}-link").symlink_to(shm / "nowhere")
    (shm / f"iopt-hil-{os.getpid()}-mine").mkdir()
    removed = sweep_stale()
    assert str(stale_run) in removed and not stale_run.exists()
    assert live_run.exists() and (shm / f"iopt-hil-{os.getpid()}-mine").exists()
    assert not (shm / f"iopt-hil-{dead}-old").exists()
    assert (tmp / "iopt-hil-run-dangling").is_symlink()  # not ours to follow or delete
    sweep_stale()  # a second sweep over what is left is just as quiet
