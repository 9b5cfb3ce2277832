"""Kernel and test-module builds: `make O=` in a cache directory keyed by tree, config, toolchain.

The same tree, fragments and toolchain always land in the same build directory, so an edit to
the tree is an incremental kbuild rebuild; when nothing at all changed, make is not run.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from . import elfcheck

from . import kconfig
from .cachedir import locked
from .progress import KBUILD_STEP, LogMonitor, OnSteps, periodic_lines
from ..errors import BuildError, ConfigError, ToolchainError
from ..resources import module_dir
from ..timeline import TIMELINE
from .api_probe import ApiProbe
from .arch import ARM64 as ARCH, RELEASE_FILE
from .toolchain import Bind, Toolchain
from .tree import KernelTree, TreeIdentity, content_key, identify

MODULE_NAME = "iopt_hil"
Progress = Callable[[str], None]
# kbuild step lines of a cold build (tinyconfig + fragments, Image + modules + the test module):
# 1,351 counted in the build log of a cold linux-source-7.3.4 build of the base config (6 Dec
# 2026; 1,670 before it turned off IPv6 and the other unused defaults). Only the first build of
# a build directory uses it; later ones expect what the previous one there counted.
COLD_STEPS = 1350


@dataclass(frozen=True)
class KernelBuild:
    """Everything a boot and a report need to know about one build."""

    key: str
    out: Path
    image: Path
    vmlinux: Path
    module: Path
    release: str
    identity: TreeIdentity
    fragments: tuple[str, ...]
    toolchain: dict[str, str]
    rebuilt: bool
    seconds: float
    log: Path
    build_id: str = ""
    kunit_modules: tuple[Path, ...] = ()
    api: ApiProbe | None = None  # the io_pgtable API generation the module was built for
    toolchain_name: str = ""  # e.g. buildroot-trixie

    def provenance(self) -> dict[str, str]:
        return {"tree": self.identity.describe(), "kernel_release": self.release,
                "fragments": ",".join(self.fragments), "build_key": self.key,
                "build_id": self.build_id,
                "api_generation": self.api.describe() if self.api else "",
                "build_root": self.toolchain_name,
                **{f"toolchain.{k}": v for k, v in self.toolchain.items()}}


def build_key(tree: KernelTree, fragments_digest: str, toolchain_key: str) -> str:
    raw = f"{os.path.realpath(tree.path)}\0{fragments_digest}\0{toolchain_key}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def module_sources() -> list[Path]:
    """The Rust module's source files (Kbuild, *.rs), in a stable order."""
    return sorted(p for p in module_dir().iterdir() if p.is_file() and (p.suffix == ".rs" or p.name == "Kbuild"))


def module_digest() -> str:
    digest = hashlib.sha256()
    for path in module_sources():
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def build(tree: KernelTree, api: ApiProbe, fragment_names: list[str], toolchain: Toolchain,
          cache: Path, progress: Progress = print, source: str = "", jobs: int | None = None,
          on_steps: OnSteps | None = None) -> KernelBuild:
    """Configure (if the fragments changed), build Image + module (if anything changed).
    `on_steps` sees the build's progress live (default: a line every 15 s through `progress`)."""
    started = time.monotonic()
    paths = kconfig.fragment_paths(fragment_names)
    texts = [p.read_text() for p in paths]
    frag_digest = kconfig.digest(texts)
    key = build_key(tree, frag_digest, toolchain.info.key())
    bdir = cache / "builds" / key
    # One kernel per key; one module build per module source, beside it: two checkouts of the
    # harness (or a wheel and a checkout) with different modules share the kernel and never
    # rebuild or replace each other's module.
    modules = module_digest()
    out, moddir, log = bdir / "out", bdir / f"module-{modules[:16]}", bdir / "build.log"
    with locked(cache / "builds" / f"{key}.lock"):
        out.mkdir(parents=True, exist_ok=True)
        with TIMELINE.phase("build: tree fingerprint"):
            content = content_key(tree.path)
        identity = identify(tree, source, content)
        kernel_inputs = hashlib.sha256("\0".join([content, frag_digest, toolchain.info.key()])
                                       .encode()).hexdigest()
        module_inputs = hashlib.sha256("\0".join([kernel_inputs, modules, api.rustflags()])
                                       .encode()).hexdigest()
        stamp, module_stamp = bdir / "stamp.json", moddir / "stamp"
        previous = json.loads(stamp.read_text()) if stamp.exists() else {}
        artifacts = (out / ARCH.image, out / "vmlinux", moddir / f"{MODULE_NAME}.ko")
        kernel_current = previous.get("inputs") == kernel_inputs and all(a.exists() for a in artifacts[:2])
        module_current = (kernel_current and artifacts[2].exists() and module_stamp.exists()
                          and module_stamp.read_text() == module_inputs)
        rebuilt = not (kernel_current and module_current)
        if not rebuilt:
            progress(f"kernel build {key}: nothing changed, make skipped")
        else:
            make = ["make", "-C", str(tree.path), f"O={out}", f"ARCH={ARCH.name}", "LLVM=1",
                    f"-j{jobs or os.cpu_count() or 2}"]
            binds = [Bind(tree.path, readonly=True), Bind(bdir)]
            configuring = not _config_current(out, bdir, frag_digest)
            expected = expected_steps(previous, configuring) if not kernel_current else None
            monitor = LogMonitor(log, KBUILD_STEP, "kernel build", expected,
                                 on_steps or periodic_lines(progress))
            with open(log, "wb") as logf, monitor:  # one build per log: results keep a copy
                def step(what: str, argv: list[str]) -> None:
                    logf.write(f"\n### {what}: {' '.join(argv)}\n".encode())
                    logf.flush()
                    try:
                        with TIMELINE.phase(f"build: {what}"):
                            toolchain.run(argv, binds, stdout=logf)
                    except ToolchainError as exc:
                        raise BuildError(f"{what} failed for {tree.path}", str(log),
                                         _tail(log)) from exc
                if kernel_current:
                    progress(f"kernel build {key}: kernel unchanged; building this test module")
                else:
                    _configure(step, make, tree.path, out, bdir, texts, frag_digest, progress)
                    progress(f"kernel build {key}: make Image modules (log: {log})")
                    # with CONFIG_GDB_SCRIPTS, vmlinux-gdb.py and its helpers beside vmlinux
                    gdb = ["scripts_gdb"] if "CONFIG_GDB_SCRIPTS=y" in (out / ".config").read_text() else []
                    step("kernel", make + ["Image", "modules", *gdb])
                sync_module(moddir)
                progress("kernel build: test module")
                module_stamp.unlink(missing_ok=True)
                try:
                    step("module", make + [f"M={moddir}", f"IOPT_HIL_RUSTFLAGS={api.rustflags()}", "modules"])
                except BuildError as exc:
                    raise BuildError(
                        "the test module does not build against this tree's kernel::iommu::pgtable "
                        f"API (probed: {api.describe()}; see the compiler errors below)",
                        str(log), exc.tail) from exc
                module_stamp.write_text(module_inputs)
            if not kernel_current:
                counts = {"steps": monitor.count,
                          "cold_steps": monitor.count if configuring else previous.get("cold_steps")}
                stamp.write_text(json.dumps({"inputs": kernel_inputs, "identity": asdict(identity),
                                             **counts}))
        release = (out / RELEASE_FILE).read_text().strip()
        with TIMELINE.phase("build: module checks"):
            elfcheck.check_module(artifacts[2], release, out / "Module.symvers")
            kunit = tuple(elfcheck.kunit_modules(out))
    return KernelBuild(key, out, artifacts[0], artifacts[1], artifacts[2], release, identity,
                       tuple(p.stem for p in paths), toolchain.info.versions, rebuilt,
                       time.monotonic() - started, log, elfcheck.build_id(artifacts[1]), kunit,
                       api, toolchain.info.name)


def expected_steps(previous: dict[str, object], configuring: bool) -> int | None:
    """How many step lines this build will print, judged by the build directory's last build:
    a (re)configured build is a full one; otherwise it is like the previous incremental one."""
    value = (previous.get("cold_steps") or COLD_STEPS) if configuring else previous.get("steps")
    return value if isinstance(value, int) and value > 0 else None


def _config_current(out: Path, bdir: Path, frag_digest: str) -> bool:
    marker = bdir / "config.digest"
    return (out / ".config").exists() and marker.exists() and marker.read_text() == frag_digest


def _configure(step: Callable[[str, list[str]], None], make: list[str], tree: Path, out: Path,
               bdir: Path, texts: list[str], frag_digest: str, progress: Progress) -> None:
    """`make tinyconfig`, then the fragments and olddefconfig, with the .config the tree's own
    targets give but two top-level makes fewer: tinyconfig re-enters make for allnoconfig,
    for its fragment and for olddefconfig, and every top-level make re-runs the tree's
    compiler probes (~4 s each under the build root). Same steps, same order, same result."""
    marker = bdir / "config.digest"
    if _config_current(out, bdir, frag_digest):
        return
    progress("kernel config: tinyconfig + fragments + olddefconfig")
    step("rustavailable", make[:5] + ["rustavailable"])
    base, tiny = kconfig.tiny_fragments(tree, ARCH.name)
    step("allnoconfig", make + ([f"KCONFIG_ALLCONFIG={base}"] if base else []) + ["allnoconfig"])
    _append(out / ".config", "tinyconfig's fragments", "".join(p.read_text() for p in tiny))
    step("olddefconfig (tinyconfig)", make + ["olddefconfig"])
    requested = kconfig.merge(texts)
    _append(out / ".config", "iopt-hil fragments", kconfig.render(requested))
    step("olddefconfig", make + ["olddefconfig"])
    dropped = kconfig.check(requested, kconfig.parse((out / ".config").read_text()))
    if dropped:
        raise ConfigError("requested Kconfig symbols did not survive olddefconfig (missing "
                          "dependency, or not in this tree):\n  "
                          + "\n  ".join(map(str, dropped)), [d.symbol for d in dropped])
    marker.write_text(frag_digest)


def _append(config: Path, what: str, text: str) -> None:
    """A later line for a symbol wins in kconfig, as merge_config.sh's replacement does."""
    with open(config, "a") as cfg:
        cfg.write(f"\n# {what}\n{text}")


def sync_module(moddir: Path) -> None:
    """Copy the module sources, touching only files whose content changed (kbuild uses mtimes)."""
    moddir.mkdir(parents=True, exist_ok=True)
    sources = module_sources()
    for src in sources:
        dst = moddir / src.name
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            shutil.copyfile(src, dst)
    names = {src.name for src in sources}
    for stale in moddir.glob("*.rs"):  # a source file removed from the module is gone here too
        if stale.name not in names:
            stale.unlink()


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
