"""A newc ("070701") cpio writer, so the initramfs needs neither root nor a cpio binary."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Member:
    name: str  # path inside the archive, no leading slash
    mode: int  # full st_mode, file type included
    data: bytes = b""  # file content, or the symlink's target

    @classmethod
    def file(cls, name: str, data: bytes, perm: int = 0o644) -> "Member":
        return cls(name, stat.S_IFREG | perm, data)

    @classmethod
    def directory(cls, name: str, perm: int = 0o755) -> "Member":
        return cls(name, stat.S_IFDIR | perm)

    @classmethod
    def symlink(cls, name: str, target: str) -> "Member":
        return cls(name, stat.S_IFLNK | 0o777, target.encode())


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


class CpioWriter:
    """Streams members in order; `close()` writes the trailer. Owner is always root."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.ino = 1

    def add(self, member: Member) -> None:
        name = member.name.lstrip("/").encode() + b"\0"
        fields = [self.ino, member.mode, 0, 0, 1, 0, len(member.data), 0, 0, 0, 0, len(name), 0]
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.out.write(header + name + _pad(len(header) + len(name)))
        self.out.write(member.data + _pad(len(member.data)))
        self.ino += 1

    def close(self) -> None:
        self.add(Member(TRAILER, 0))


def members_from_dir(root: Path, prefix: str = "") -> list[Member]:
    """Every directory, file and symlink under `root`, parents before children."""
    found: list[Member] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        base = prefix.strip("/") if rel == "." else os.path.join(prefix.strip("/"), rel)
        if base:
            found.append(Member.directory(base, os.stat(dirpath).st_mode & 0o7777))
        for name in sorted(filenames) + sorted(d for d in dirnames if os.path.islink(os.path.join(dirpath, d))):
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            arc = os.path.join(base, name) if base else name
            if stat.S_ISLNK(st.st_mode):
                found.append(Member.symlink(arc, os.readlink(full)))
            elif stat.S_ISREG(st.st_mode):
                found.append(Member.file(arc, Path(full).read_bytes(), st.st_mode & 0o7777))
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    return found
