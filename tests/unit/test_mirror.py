"""The build root's mirror comes from the host's apt sources (both formats), or the override."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.build.mirror import debian_mirror, host_mirrors
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
        "Types: deb\nURIs: http://mirror.example/security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n\n"
        "Types: deb deb-src\nURIs: http://local.example:3142/debian/\nSuites: bookworm bookworm-updates\n"
        "Components: main contrib\n"))
    assert debian_mirror(root) == "http://local.example:3142/debian"


def test_one_line_format_with_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IOPT_HIL_MIRROR", raising=False)
    root = apt(tmp_path, "# comment\ndeb-src http://src.example/debian bookworm main\n"
               "deb [arch=amd64 signed-by=/k.gpg] http://proxy.example/debian bookworm main\n")
    assert host_mirrors(root) == ["http://proxy.example/debian"]


def test_override_and_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = apt(tmp_path, "deb http://a.example/debian bookworm contrib\n")
    monkeypatch.delenv("IOPT_HIL_MIRROR", raising=False)
    with pytest.raises(ToolchainError, match="IOPT_HIL_MIRROR"):
        debian_mirror(root)
    monkeypatch.setenv("IOPT_HIL_MIRROR", "http://override.example/debian/")
    assert debian_mirror(root) == "http://override.example/debian"


def test_this_host_has_a_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machines the harness runs on are Debian: their sources must yield an archive."""
    monkeypatch.delenv("IOPT_HIL_MIRROR", raising=False)
    assert debian_mirror().startswith(("http://", "https://", "file:/"))
