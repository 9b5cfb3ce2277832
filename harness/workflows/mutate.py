"""Mutation self-check: deliberately wrong one-line changes to a private copy of a tree's
io-pgtable-arm.c and Rust wrapper; the suite must fail on every one (and pass clean).

The copy lives in the cache and is built once; each mutant is then an incremental rebuild. A git
tree's copy is verify's private checkout (its HEAD plus uncommitted changes), so mutate, verify
and bisect-run of one repository share one build; any other tree is copied once.
"""
from __future__ import annotations

import hashlib
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

from ..build.buildroot import BuildRoot
from ..build.cachedir import locked
from ..build.git import is_repo
from ..build.pipeline import BuildRequest, prepare
from ..build.tree import PACKAGE_PREFIX, KernelTree, default_tree, packaged_tree, user_tree
from ..build.worktree import PrivateWorktree
from ..errors import BuildError, ConfigError, TreeError
from ..resources import suite_dir
from .options import SuiteOptions
from .suite_run import run_child_suite

C_FILE = "drivers/iommu/io-pgtable-arm.c"
RUST_FILE = "rust/kernel/iommu/pgtable.rs"
SUITE = ("test_map_basic.py", "test_contract.py", "test_matrix.py", "test_format.py",
         "test_paths.py", "test_races.py", "test_sequences.py")  # in the guest suite
DEVICE_SUITE = ("test_dma.py",)  # the device's view only: what io-pgtable's own answers miss


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str  # exactly one occurrence in the file
    new: str
    suite: tuple[str, ...] = SUITE  # the test files that must kill it
    also: tuple[tuple[str, str], ...] = ()  # further (old, new) edits of the same file

    def applied(self, text: str) -> str | None:
        """`text` with every edit made, or None if a line to change is not there exactly once."""
        edits = ((self.old, self.new),) + self.also
        if any(text.count(old) != 1 for old, _ in edits):
            return None
        for old, new in edits:
            text = text.replace(old, new)
        return text


MUTANTS = [
    Mutant("read-only bit inverted", C_FILE,
           "if (!(prot & IOMMU_WRITE) && (prot & IOMMU_READ))",
           "if ((prot & IOMMU_WRITE) && (prot & IOMMU_READ))"),
    Mutant("NOEXEC ignored", C_FILE, "\tif (prot & IOMMU_NOEXEC)", "\tif (0 && (prot & IOMMU_NOEXEC))"),
    Mutant("CACHE maps non-cacheable", C_FILE, "pte |= (ARM_LPAE_MAIR_ATTR_IDX_CACHE",
           "pte |= (ARM_LPAE_MAIR_ATTR_IDX_NC"),
    Mutant("cacheable not inner-shareable", C_FILE, "\t\tpte |= ARM_LPAE_PTE_SH_IS;",
           "\t\tpte |= ARM_LPAE_PTE_SH_OS;"),
    Mutant("mapped counts one page", C_FILE, "*mapped += num_entries * size;", "*mapped += size;"),
    Mutant("Rust map_pages shifts paddr", RUST_FILE, "                paddr,\n",
           "                paddr + 4096,\n"),
    Mutant("Rust unmap_pages one page only", RUST_FILE,
           "(unmap_pages)(self.raw_ops(), iova, pgsize, pgcount,",
           "(unmap_pages)(self.raw_ops(), iova, pgsize, 1,"),
    Mutant("Rust mair() shifted", RUST_FILE, "__bindgen_anon_1.arm_lpae_s1_cfg.mair }",
           "__bindgen_anon_1.arm_lpae_s1_cfg.mair >> 8 }"),
    # The format beyond the common path (tests/guest/test_format.py).
    Mutant("ARM_NS: no NS on leaves", C_FILE, "pte |= ARM_LPAE_PTE_NS;", "pte |= 0;"),
    Mutant("ARM_NS: no NSTable on tables", C_FILE, "new |= ARM_LPAE_PTE_NSTABLE;", "new |= 0;"),
    Mutant("ARM_HD: DBM on read-only leaves too", C_FILE,
           "else if (data->iop.cfg.quirks & IO_PGTABLE_QUIRK_ARM_HD)",
           "if (data->iop.cfg.quirks & IO_PGTABLE_QUIRK_ARM_HD)"),
    Mutant("OUTER_WBWA ignored", C_FILE, "if (!(cfg->quirks & IO_PGTABLE_QUIRK_ARM_OUTER_WBWA))",
           "if (1)"),
    Mutant("stage-1 accepts S2FWB", C_FILE, "IO_PGTABLE_QUIRK_ARM_OUTER_WBWA |",
           "IO_PGTABLE_QUIRK_ARM_OUTER_WBWA | IO_PGTABLE_QUIRK_ARM_S2FWB |"),
    Mutant("Rust new() drops the quirks", RUST_FILE, "quirks: config.quirks,", "quirks: 0,"),
    Mutant("Rust new() always coherent", RUST_FILE, "coherent_walk: config.coherent_walk,",
           "coherent_walk: true,"),
    Mutant("52-bit PA: bits 51:48 dropped", C_FILE,
           "return (pte | (pte >> (48 - 12))) & ARM_LPAE_PTE_ADDR_MASK;",
           "return pte & ARM_LPAE_PTE_ADDR_MASK;"),
    Mutant("4TB block dropped from the bitmap", C_FILE, "if (cfg->oas > 48)", "if (cfg->oas > 52)"),
    Mutant("T0SZ off by one", C_FILE, "\ttcr->tsz = 64ULL - cfg->ias;",
           "\ttcr->tsz = 63ULL - cfg->ias;"),
    Mutant("TG0 of 16K encoded as 64K", C_FILE, ": ARM_LPAE_TCR_TG0_16K;", ": ARM_LPAE_TCR_TG0_64K;"),
    # Issue #14 item 5: a block written over an emptied table without unmapping (freeing) it.
    Mutant("block over an emptied table leaks it", C_FILE,
           "} else if (iopte_type(ptep[i]) == ARM_LPAE_PTE_TYPE_TABLE) {",
           "} else if (0 && iopte_type(ptep[i]) == ARM_LPAE_PTE_TYPE_TABLE) {"),
    # Item 6: the mapper that lost the race to install a table keeps its own (a leak), or
    # installs it without the compare-and-swap (overwriting the winner's table and leaves).
    Mutant("cmpxchg loser keeps its table", C_FILE,
           "\t\tif (pte)\n\t\t\t__arm_lpae_free_pages(cptep, tblsz, cfg, data->iop.cookie);",
           "\t\tif (0 && pte)\n\t\t\t__arm_lpae_free_pages(cptep, tblsz, cfg, data->iop.cookie);"),
    Mutant("table installed with a plain store", C_FILE,
           "old = cmpxchg64_relaxed(ptep, curr, new);", "old = curr; WRITE_ONCE(*ptep, new);"),
    # Item 7: an unmap of several entries reads the first entry each time, so the second of
    # two full tables (a fill and a larger unmap: only the random sequences make it) is lost.
    Mutant("unmap rereads its first entry", C_FILE,
           "pte = READ_ONCE(ptep[i]);", "pte = READ_ONCE(ptep[0]);"),
    # Only a device sees these: iova_to_phys never looks at the access flag, and here it is
    # patched to agree with the wrong output address.
    Mutant("device: leaves without the access flag", C_FILE, "\t\tpte |= ARM_LPAE_PTE_AF;",
           "\t\tpte |= 0;", suite=DEVICE_SUITE),
    Mutant("device: leaf output one page up, iova_to_phys agrees", C_FILE,
           "ptep[i] = pte | paddr_to_iopte(paddr + i * sz, data);",
           "ptep[i] = pte | paddr_to_iopte(paddr + i * sz + SZ_4K, data);", suite=DEVICE_SUITE,
           also=(("return iopte_to_paddr(d.pte, data) | iova;",
                  "return (iopte_to_paddr(d.pte, data) - SZ_4K) | iova;"),)),
    Mutant("device: 48-bit oas gets a 44-bit IPS", C_FILE,
           "\t\ttcr->ips = ARM_LPAE_TCR_PS_48_BIT;", "\t\ttcr->ips = ARM_LPAE_TCR_PS_44_BIT;",
           suite=DEVICE_SUITE),
]


@dataclass(frozen=True)
class Outcome:
    name: str
    built: bool
    suite_failed: bool
    seconds: float
    first_failure: str = ""
    applied: bool = True  # False: its pattern is not in the tree exactly once

    @property
    def killed(self) -> bool:
        return self.applied and self.built and self.suite_failed

    @property
    def verdict(self) -> str:
        if not self.applied:
            return "NOT APPLIED (pattern not found exactly once)"
        if not self.built:
            return "BUILD FAILED"
        return "killed" if self.suite_failed else "SURVIVED"


def self_check_passed(clean: Outcome, outcomes: list[Outcome]) -> bool:
    """The clean tree passes and every chosen mutant was applied, built and killed: a mutant
    that could not be tried is a hole in the check, not a pass."""
    return clean.built and not clean.suite_failed and all(o.killed for o in outcomes)


def private_copy(source: KernelTree, cache: Path) -> Path:
    """A copy of a plain source tree that only this command edits (made once per tree)."""
    key = hashlib.sha256(str(source.path).encode()).hexdigest()[:16]
    dest = cache / "mutation" / key / "tree"
    with locked(cache / "mutation.lock"):
        if not (dest / ".copied").exists():
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(source.path, dest, symlinks=True)
            (dest / ".copied").write_text(str(source.path))
    return dest


@contextmanager
def mutable_tree(tree: Path | str | None, root: BuildRoot) -> Iterator[Path]:
    """Where the mutants are written: never the user's tree itself."""
    if tree is not None and not str(tree).startswith(PACKAGE_PREFIX) and is_repo(Path(tree)):
        with PrivateWorktree(Path(tree), root.cache).session() as worktree:
            worktree.user_head()
            yield worktree.path
        return
    if tree is None:
        source = default_tree(root)
    elif str(tree).startswith(PACKAGE_PREFIX):
        source = packaged_tree(root, str(tree)[len(PACKAGE_PREFIX):])
    else:
        source = user_tree(Path(tree))
    yield private_copy(source, root.cache)


def _suite(tree: Path, cache: Path, options: SuiteOptions, results: Path,
           suite: tuple[str, ...] = SUITE) -> tuple[bool, bool, float, str]:
    """(built, suite failed, seconds, first failing test) for one state of the tree. The suite
    stops at the first failure (-x); the verdict comes from its JUnit file, as verify's does."""
    started = time.monotonic()
    try:
        prepare(BuildRequest(tree=tree, toolchain=options.toolchain, fragments=options.fragments,
                             cache=cache), lambda _msg: None)
    except (BuildError, ConfigError, TreeError) as exc:  # why, for the table and the log
        why = " ".join(line.strip() for line in str(exc).splitlines()[:4]) or type(exc).__name__
        return False, True, time.monotonic() - started, f"build: {why[:300]}"
    if results.exists():
        shutil.rmtree(results)
    tests = tuple(str(suite_dir() / name) for name in suite)
    outcome = run_child_suite(tree, replace(options, pytest_args=("-x", "--no-kunit") + tests,
                                            cache=cache), results)
    failed = [c.name for c in outcome.cases if c.outcome in ("failed", "error")]
    suite_failed = outcome.status != 0 or not outcome.cases
    return True, suite_failed, time.monotonic() - started, failed[0] if failed else ""


def run(tree: Path | str | None, root: BuildRoot, options: SuiteOptions,
        log: Callable[[str], None] = print,
        only: list[str] | None = None) -> tuple[Outcome, list[Outcome]]:
    """The clean tree, then each mutant (those whose name contains one of `only`)."""
    cache = root.cache
    results = cache / "mutation" / "results"
    chosen = [m for m in MUTANTS if not only or any(o in m.name for o in only)]
    # the clean tree must pass every test file a chosen mutant is judged by
    every = tuple(dict.fromkeys(name for m in chosen for name in m.suite)) or SUITE
    with mutable_tree(tree, root) as copy:
        log(f"clean tree {copy}: building (first time: a full build) and running the suite")
        built, failed, secs, first = _suite(copy, cache, options, results, every)
        clean = Outcome("clean tree", built, failed, secs, first)
        log(f"  clean: {'PASSES' if built and not failed else 'FAILS'} ({secs:.0f} s)"
            + (f": {first}" if first.startswith("build: ") else ""))
        outcomes = []
        for mutant in chosen:
            path = copy / mutant.path
            original = path.read_text()
            mutated = mutant.applied(original)
            if mutated is None:
                outcomes.append(Outcome(mutant.name, False, False, 0.0, applied=False))
                log(f"  {mutant.name}: pattern not found exactly once in {mutant.path}")
                continue
            path.write_text(mutated)
            try:
                built, failed, secs, first = _suite(copy, cache, options, results, mutant.suite)
            finally:
                path.write_text(original)
            outcomes.append(Outcome(mutant.name, built, failed, secs, first))
            log(f"  {mutant.name}: {outcomes[-1].verdict} ({secs:.0f} s)"
                + (f": {first}" if not built else ""))
    return clean, outcomes


def table(clean: Outcome, outcomes: list[Outcome]) -> str:
    rows = ["| mutant | verdict | first failing test | seconds |", "| --- | --- | --- | --- |",
            f"| (clean tree) | {'passes' if clean.built and not clean.suite_failed else 'FAILS'} "
            f"| {clean.first_failure or '-'} | {clean.seconds:.0f} |"]
    rows += [f"| {o.name} | {o.verdict} | `{o.first_failure}` | {o.seconds:.0f} |" for o in outcomes]
    return "\n".join(rows)
