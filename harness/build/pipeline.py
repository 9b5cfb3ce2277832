"""The pipeline from a request to a bootable build: toolchain -> tree -> config -> build.

Shared by the CLI and the pytest plugin so both build exactly the same thing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import kbuild
from .api_probe import probe
from .arch import ARM64 as ARCH
from .toolreq import choose_root
from .buildroot import BuildRoot
from .cachedir import cache_root
from .kbuild import KernelBuild
from .progress import OnSteps
from ..timeline import TIMELINE
from .toolchain import HostToolchain, Toolchain
from .tree import PACKAGE_PREFIX, default_tree, packaged_tree, user_tree, validate

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BuildRequest:
    tree: Path | None = None  # None: the default Debian source package; debian:NAME another
    toolchain: str = "buildroot"  # or "host"
    fragments: tuple[str, ...] = field(default=())  # extra fragments on top of `base`
    cache: Path | None = None


@dataclass(frozen=True)
class Prepared:
    root: BuildRoot
    build: KernelBuild


def prepare(request: BuildRequest, progress: Progress = print,
            on_steps: OnSteps | None = None) -> Prepared:
    """`progress` gets messages; `on_steps` the live step counts of the build root creation
    and the kernel build (default: one line every 15 s through `progress`)."""
    cache = request.cache or cache_root()
    with TIMELINE.phase("build: build root"):
        root = BuildRoot(cache).ensure(progress, on_steps)  # QEMU and guest packages come from here too
    if request.tree is None:
        with TIMELINE.phase("build: tree unpack"):  # once per cache: seconds of a cold run
            tree = default_tree(root)
        validate(tree)
        source = f"{ARCH.source_package}={root.versions().get(ARCH.source_package, '?')}"
    elif str(request.tree).startswith(PACKAGE_PREFIX):
        package = str(request.tree)[len(PACKAGE_PREFIX):]
        with TIMELINE.phase("build: tree unpack"):
            tree = packaged_tree(root, package)
        validate(tree)
        source = f"{package}={(tree.path / '.unpacked').read_text().strip()}"
    else:
        tree = user_tree(request.tree)
        source = ""
    with TIMELINE.phase("build: api probe"):
        api = probe(tree.path)  # an unknown API shape is refused here, before any build
    with TIMELINE.phase("build: toolchain choice"):
        toolchain: Toolchain = (HostToolchain() if request.toolchain == "host"
                                else choose_root(tree.path, root, progress))
    progress(f"io_pgtable API of {tree.path}: {api.describe()}")
    build = kbuild.build(tree, api, list(request.fragments), toolchain, cache, progress, source,
                         on_steps=on_steps)
    progress(f"kernel {build.release} from {build.identity.describe()} "
             f"({'rebuilt' if build.rebuilt else 'cached'}, {build.seconds:.1f} s)")
    return Prepared(root, build)
