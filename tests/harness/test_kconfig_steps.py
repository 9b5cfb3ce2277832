"""The configure steps give the .config the tree's own `make tinyconfig` does, on the real tree.

The harness skips two of tinyconfig's nested top-level makes (each re-runs the tree's compiler
probes), so it must be checked against the real thing: with every fragment we ship, because
a fragment that unhides a symbol tinyconfig had hidden is where a shortcut would differ.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.build import kbuild, kconfig
from harness.build.arch import ARM64 as ARCH
from harness.build.toolchain import Bind
from harness.build.tree import default_tree
from harness.resources import fragments_dir

pytestmark = pytest.mark.guest


def test_configure_equals_tinyconfig_then_fragments_then_olddefconfig(kernel_build, tmp_path):
    root = kernel_build.root
    tree = default_tree(root).path
    names = sorted(p.stem for p in fragments_dir().glob("*.config"))
    texts = [p.read_text() for p in kconfig.fragment_paths(names)]
    assert len(texts) > 1, "every shipped fragment, not only base"
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"

    def make(out: Path) -> list[str]:
        out.mkdir()
        return ["make", "-C", str(tree), f"O={out}", f"ARCH={ARCH.name}", "LLVM=1", "-j2"]

    def runner(out: Path):
        def step(what: str, argv: list[str]) -> None:
            steps.append(what)
            root.run(argv, [Bind(tree, readonly=True), Bind(out)])
        return step

    steps: list[str] = []
    kbuild._configure(runner(ours), make(ours), tree, ours, tmp_path, texts, "digest",
                      lambda msg: None)
    assert steps[-1] == "olddefconfig" and "tinyconfig" not in steps

    argv = make(theirs)
    root.run(argv + ["tinyconfig"], [Bind(tree, readonly=True), Bind(theirs)])
    with open(theirs / ".config", "a") as cfg:
        cfg.write(kconfig.render(kconfig.merge(texts)))
    root.run(argv + ["olddefconfig"], [Bind(tree, readonly=True), Bind(theirs)])

    assert (ours / ".config").read_text() == (theirs / ".config").read_text()
