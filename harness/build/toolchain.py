"""Where commands run: the managed Debian trixie build root, or the host itself.

Commands always see the host's paths: the build root bind-mounts every directory a command needs
at the same absolute path inside a private mount namespace, so a path means the same thing in
every layer and nothing stays mounted once the command exits.
"""
from __future__ import annotations

import ctypes
import os
import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, Sequence

from ..errors import ToolchainError
from .namespace import unshare_argv

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL when the harness dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass(frozen=True)
class Bind:
    """A host directory made visible to commands at the same path."""

    path: Path
    readonly: bool = False


@dataclass(frozen=True)
class ToolchainInfo:
    name: str
    versions: dict[str, str] = field(default_factory=dict)

    def key(self) -> str:
        return self.name + ";" + ";".join(f"{k}={v}" for k, v in sorted(self.versions.items()))


class Toolchain(Protocol):
    """Runs build and guest tools; `binds` are the host directories the command touches."""

    info: ToolchainInfo

    def argv(self, argv: Sequence[str], binds: Sequence[Bind] = ()) -> list[str]: ...

    def run(self, argv: Sequence[str], binds: Sequence[Bind] = (), *, cwd: Path | None = None,
            stdout: int | IO[Any] | None = None, check: bool = True,
            timeout: float | None = None) -> subprocess.CompletedProcess[bytes]: ...


class HostToolchain:
    """Use the host's own clang/rustc/bindgen (`--toolchain host`)."""

    def __init__(self) -> None:
        self.info = ToolchainInfo("host", host_versions())

    def argv(self, argv: Sequence[str], binds: Sequence[Bind] = ()) -> list[str]:
        """In its own namespaces too: a killed harness leaves no compiler behind."""
        return unshare_argv() + list(argv)

    def run(self, argv: Sequence[str], binds: Sequence[Bind] = (), *, cwd: Path | None = None,
            stdout: int | IO[Any] | None = None, check: bool = True,
            timeout: float | None = None) -> subprocess.CompletedProcess[bytes]:
        return run_logged(self.argv(argv, binds), cwd=cwd, stdout=stdout, check=check,
                          timeout=timeout)


def host_versions() -> dict[str, str]:
    versions = {}
    for tool, flag in (("clang", "--version"), ("rustc", "--version"), ("bindgen", "--version")):
        exe = shutil.which(tool)
        if exe is None:
            raise ToolchainError(f"--toolchain host: `{tool}` is not on PATH")
        out = subprocess.run([exe, flag], capture_output=True, text=True).stdout
        versions[tool] = out.splitlines()[0].strip() if out else "unknown"
    return versions


def run_logged(argv: Sequence[str], *, cwd: Path | None = None,
               stdout: int | IO[Any] | None = None, check: bool = True,
               timeout: float | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run with stderr folded into stdout (a build log), dying with the harness."""
    proc = subprocess.run(list(argv), cwd=cwd, stdin=subprocess.DEVNULL,
                          stdout=stdout if stdout is not None else subprocess.PIPE,
                          stderr=subprocess.STDOUT, preexec_fn=die_with_parent, timeout=timeout)
    if check and proc.returncode != 0:
        out = proc.stdout.decode(errors="replace")[-3000:] if proc.stdout else ""
        raise ToolchainError(f"command failed ({proc.returncode}): {shlex.join(argv)}\n{out}")
    return proc


def chroot_argv(root: Path, argv: Sequence[str], binds: Sequence[Bind],
                env: dict[str, str], cwd: Path | None = None) -> list[str]:
    """An `unshare` command line that mounts /dev, /proc and `binds` privately, then chroots
    (see `namespace`: private mount and pid namespaces, and a user namespace without root)."""
    top = shlex.quote(str(root))  # cache paths may hold spaces or shell metacharacters
    lines = ["set -e", f"mount --rbind /dev {top}/dev", f"mount -t proc proc {top}/proc"]
    for bind in binds:
        host = os.path.realpath(bind.path)
        inner = shlex.quote(f"{root}{host}")
        lines.append(f"mkdir -p {inner}")
        lines.append(f"mount --bind {shlex.quote(host)} {inner}")
        if bind.readonly:
            lines.append(f"mount -o remount,bind,ro {inner}")
    envs = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    inner_cmd = shlex.join(argv)
    if cwd is not None:
        inner_cmd = shlex.join(["sh", "-c", f"cd {shlex.quote(str(cwd))} && exec {inner_cmd}"])
    lines.append('PATH="$PATH:/usr/sbin:/sbin"')  # an ordinary account's PATH lacks chroot
    lines.append(f"exec chroot {shlex.quote(str(root))} env -i {envs} {inner_cmd}")
    return unshare_argv() + ["sh", "-c", "\n".join(lines)]
