"""mmdebstrap, which makes the build root as root or (with --mode=unshare) as an ordinary user.

The host's own copy when it has one; otherwise the package is fetched with the host's apt
(`apt-get download` needs no root) and unpacked into the cache, so nothing is installed into
the host. It is one Perl script that needs only perl, apt and dpkg, which every Debian host has.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..errors import ToolchainError
from .cachedir import locked

PACKAGE = "mmdebstrap"


def mmdebstrap(cache: Path) -> Path:
    """Path of an mmdebstrap script to run."""
    host = shutil.which(PACKAGE)
    if host:
        return Path(host)
    home = cache / "tools" / PACKAGE
    script = home / "usr" / "bin" / PACKAGE
    with locked(cache / "tools.lock"):
        if script.exists():
            return script
        download = cache / "tools" / "download"
        shutil.rmtree(download, ignore_errors=True)
        download.mkdir(parents=True)
        proc = subprocess.run(["apt-get", "download", "-q", PACKAGE], cwd=download,
                              capture_output=True, text=True)
        debs = sorted(download.glob(f"{PACKAGE}_*.deb"))
        if proc.returncode != 0 or not debs:
            raise ToolchainError(
                f"{PACKAGE} is not installed and `apt-get download {PACKAGE}` failed "
                f"({proc.stderr.strip()[-300:] or 'no package file'}): install it "
                f"(`apt install {PACKAGE}`), or refresh the host's package lists (`apt update`)")
        unpacked = cache / "tools" / f"{PACKAGE}.tmp"
        shutil.rmtree(unpacked, ignore_errors=True)
        subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(unpacked)], check=True)
        shutil.rmtree(home, ignore_errors=True)
        unpacked.rename(home)
        shutil.rmtree(download, ignore_errors=True)
    return script
