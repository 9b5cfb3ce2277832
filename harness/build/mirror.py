"""The Debian mirror a build root is made from: the host's own apt sources, so a developer behind
a local mirror or proxy needs no configuration; `$IOPT_HIL_MIRROR` overrides it."""
from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import ToolchainError

APT = Path("/etc/apt")
ARCHIVE_SCHEMES = ("http", "https", "file")  # what apt in mmdebstrap can fetch from


def _deb822_uris(text: str) -> list[str]:
    """URIs of `Types: deb` stanzas with component main, not the security archive."""
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^([A-Za-z-]+):[ \t]*(.*)$", stanza, re.M))
        if "deb" not in fields.get("Types", "").split() or "main" not in fields.get("Components", "").split():
            continue
        if fields.get("Enabled", "yes").lower() == "no":
            continue
        suites = fields.get("Suites", "").split()
        out += [u for u in fields.get("URIs", "").split()
                if suites and not all(s.endswith("-security") for s in suites)]
    return out


def _one_line_uris(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(words) >= 4 and words[0] == "deb" and "main" in words[3:] \
                and not words[2].endswith("-security"):
            out.append(words[1])
    return out


def host_mirrors(apt: Path = APT) -> list[str]:
    """Every Debian archive URI the host's apt sources name, in apt's reading order."""
    uris: list[str] = []
    files = [apt / "sources.list"] + sorted((apt / "sources.list.d").glob("*"))
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if path.suffix == ".sources":
            uris += _deb822_uris(text)
        elif path.suffix == ".list" or path.name == "sources.list":
            uris += _one_line_uris(text)
    return [u.rstrip("/") for u in uris if urlsplit(u).scheme in ARCHIVE_SCHEMES]


def debian_mirror(apt: Path = APT) -> str:
    """`$IOPT_HIL_MIRROR`, else the host's first Debian archive."""
    env = os.environ.get("IOPT_HIL_MIRROR")
    if env:
        return env.rstrip("/")
    found = host_mirrors(apt)
    if not found:
        raise ToolchainError(f"no Debian archive (deb ... main) in {apt}/sources.list or "
                             f"{apt}/sources.list.d/: set IOPT_HIL_MIRROR to a Debian mirror URL")
    return found[0]
