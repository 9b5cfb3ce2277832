"""The build root's mirror comes from the host's apt sources (both formats), or the override."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from harness.build.mirror import ARCHIVE_SCHEMES, debian_mirror, host_mirrors
from harness.errors import ToolchainError


def apt(tmp_path: Path, sources_list: str = "", **parts: str) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(sources_list)
    for name, text in parts.items():
        (tmp_path / "sources.list.d" / name.replace("_", ".")).write_text(text)
    return tmp_path


def test_deb822_skips_security_and_disabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IOPT_HIL_MIRROR", raising=False)
    root = apt(tmp_path, debian_sources=(
        "Types: deb\nURIs: file:/srv/security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: file:/srv/off/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n\n"
        "Types: deb deb-src\nURIs: file:/srv/local/debian/\nSuites: bookworm bookworm-updates\n"
        "Components: main contrib\n"))
    assert debian_mirror(root) == "file:/srv/local/debian"


def test_one_line_format_with_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IOPT_HIL_MIRROR", raising=False)
    root = apt(tmp_path, "# comment\ndeb-src file:/srv/src/debian bookworm main\n"
               "deb [arch=amd64 signed-by=/k.gpg] file:/srv/proxy/debian bookworm main\n")
    assert host_mirrors(root) == ["file:/srv/proxy/debian"]


def test_override_and_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = apt(tmp_path, "deb file:/srv/a/debian bookworm contrib\n")
    monkeypatch.delenv("IOPT_HIL_MIRROR", raising=False)
    with pytest.raises(ToolchainError, match="IOPT_HIL_MIRROR"):
        debian_mirror(root)
    monkeypatch.setenv("IOPT_HIL_MIRROR", "file:/srv/override/debian/")
    assert debian_mirror(root) == "file:/srv/override/debian"


def test_this_host_has_a_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machines the harness runs on are Debian: their sources must yield an archive."""
    monkeypatch.delenv("IOPT_HIL_MIRROR", raising=False)
    assert urlsplit(debian_mirror()).scheme in ARCHIVE_SCHEMES
