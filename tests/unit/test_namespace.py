"""What an account needs to run the harness without root, and the one message naming all of it."""
from __future__ import annotations

from pathlib import Path

import pytest

import harness.build.namespace as ns
from harness.errors import HostPrerequisiteError, Requirement


def test_subordinate_ranges_by_name_or_uid(tmp_path: Path) -> None:
    subuid = tmp_path / "subuid"
    subuid.write_text("alice:100000:65536\n1001:165536:65536\nbob:bad:1\n# x\nalice:5:10\n")
    assert ns.subordinate_ranges(subuid, "alice", 1000) == [ns.SubordinateRange(100000, 65536),
                                                            ns.SubordinateRange(5, 10)]
    assert ns.subordinate_ranges(subuid, "carol", 1001) == [ns.SubordinateRange(165536, 65536)]
    assert ns.subordinate_ranges(subuid, "bob", 1002) == []
    assert ns.subordinate_ranges(tmp_path / "missing", "alice", 1000) == []


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Path, Path]:
    subuid, subgid = tmp_path / "subuid", tmp_path / "subgid"
    monkeypatch.setattr(ns, "SUBID_FILES", (subuid, subgid))
    monkeypatch.setattr(ns, "rootless", lambda: True)
    monkeypatch.setattr(ns, "_user", lambda: ("alice", 1000))
    return subuid, subgid


def test_a_user_without_ranges_or_newuidmap_hears_everything_at_once(as_user, monkeypatch) -> None:
    subuid, subgid = as_user
    subuid.write_text("alice:100000:1000\n")  # too small for a Debian root (nobody is 65534)
    monkeypatch.setattr(ns.shutil, "which", lambda tool, path=None: None)
    problems = ns.bootstrap_problems()
    whats = [p.what for p in problems]
    assert any(str(subuid) in w for w in whats) and any(str(subgid) in w for w in whats)
    assert any("newuidmap" in w for w in whats) and any("newgidmap" in w for w in whats)
    with pytest.raises(HostPrerequisiteError) as info:
        ns.require(problems)
    text = str(info.value)
    assert text.count("\n  - ") == len(problems) == 4
    assert "usermod --add-subuids" in text and "apt install uidmap" in text


def test_a_user_with_ranges_and_the_helpers_needs_nothing(as_user, monkeypatch) -> None:
    for path in as_user:
        path.write_text("alice:100000:65536\n")
    monkeypatch.setattr(ns.shutil, "which", lambda tool, path=None: f"/usr/bin/{tool}")
    assert ns.bootstrap_problems() == []


def test_root_needs_no_user_namespace_and_no_subordinate_ids(monkeypatch) -> None:
    monkeypatch.setattr(ns, "rootless", lambda: False)
    assert ns.bootstrap_problems() == [] and ns.namespace_problems() == []
    assert "--user" not in ns.unshare_argv()
    monkeypatch.setattr(ns, "rootless", lambda: True)
    argv = ns.unshare_argv()
    assert argv[:3] == ["unshare", "--user", "--map-root-user"]
    assert {"--mount", "--pid", "--fork", "--kill-child"} <= set(argv)


def test_disabled_user_namespaces_are_named_with_the_sysctl(monkeypatch) -> None:
    class Failed:
        returncode, stderr = 1, "unshare: unshare failed: Operation not permitted"

    monkeypatch.setattr(ns, "rootless", lambda: True)
    monkeypatch.setattr(ns.subprocess, "run", lambda *a, **k: Failed())
    (problem,) = ns.namespace_problems()
    assert "Operation not permitted" in problem.what and "unprivileged_userns_clone" in problem.fix


def test_the_requirement_record_is_structured() -> None:
    err = HostPrerequisiteError([Requirement("a", "b")])
    assert err.missing == [Requirement("a", "b")] and "  - a: b" in str(err)


def test_this_host_can_make_user_namespaces() -> None:
    """Real, not faked: the namespaces every build-root command runs in can be made here."""
    import subprocess

    proc = subprocess.run(ns.unshare_argv() + ["sh", "-c", "mount -t tmpfs none /mnt && echo $$"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1", "the command is not pid 1 of its own pid namespace"
