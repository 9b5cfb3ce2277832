"""The cpio writer, read back by libarchive (an independent reader)."""
import io
import stat

import libarchive

from harness.guest.cpio import CpioWriter, Member, members_from_dir


def _read_back(data: bytes) -> dict[str, tuple[int, bytes | str]]:
    out = {}
    with libarchive.memory_reader(data) as archive:
        for entry in archive:
            body = entry.linkpath if entry.issym else b"".join(entry.get_blocks())
            out[entry.pathname] = (entry.mode, body)
    return out


def test_members_round_trip_through_libarchive():
    buf = io.BytesIO()
    w = CpioWriter(buf)
    w.add(Member.directory("etc"))
    w.add(Member.file("etc/odd", b"x" * 5, 0o600))  # odd length: padding must be right
    w.add(Member.file("init", b"#!/bin/sh\n", 0o755))
    w.add(Member.symlink("bin", "usr/bin"))
    w.close()
    assert len(buf.getvalue()) % 4 == 0
    got = _read_back(buf.getvalue())
    assert got["etc/odd"] == (stat.S_IFREG | 0o600, b"xxxxx")
    assert got["init"] == (stat.S_IFREG | 0o755, b"#!/bin/sh\n")
    assert got["bin"][1] == "usr/bin" and stat.S_ISLNK(got["bin"][0])
    assert stat.S_ISDIR(got["etc"][0])


def test_members_from_dir_keeps_symlinks_and_parents_first(tmp_path):
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/busybox").write_bytes(b"\x7fELF")
    (tmp_path / "usr/bin/sh").symlink_to("busybox")
    (tmp_path / "usr/lib").symlink_to("bin")
    names = [m.name for m in members_from_dir(tmp_path / "usr", "usr")]
    assert names.index("usr") < names.index("usr/bin") < names.index("usr/bin/busybox")
    buf = io.BytesIO()
    w = CpioWriter(buf)
    for m in members_from_dir(tmp_path / "usr", "usr"):
        w.add(m)
    w.close()
    got = _read_back(buf.getvalue())
    assert got["usr/bin/sh"][1] == "busybox" and got["usr/lib"][1] == "bin"
    assert got["usr/bin/busybox"][1] == b"\x7fELF"
