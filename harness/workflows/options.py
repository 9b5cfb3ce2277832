"""The options every entry point shares, declared once, and the one builder of child command lines.

The CLI (argparse) and the pytest plugin (pytest's argparse-based parser) both register these
declarations, so `iopt-hil run --tree X` and `pytest --tree X` mean the same thing; verify,
bisect-run and mutate start child `iopt-hil run` processes through `run_argv`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..pgtable.lpae import DEFAULT_GRANULE, GRANULE_NAMES


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    kwargs: dict[str, Any]

    def register(self, add: Callable[..., Any]) -> None:
        """`add` is argparse's `add_argument` or pytest's `addoption`: same keywords."""
        add(*self.flags, **self.kwargs)


TREE = Option(("--tree",), dict(type=Path, default=None, help="kernel tree to test: a path, or "
                                "debian:linux-source-X.Y (default: Debian linux-source-7.3)"))
TOOLCHAIN = Option(("--toolchain",), dict(choices=("buildroot", "host"), default="buildroot",
                                          help="build with the build root's compilers, or the host's"))
KCONFIG = Option(("--kconfig",), dict(action="append", default=[], metavar="FRAGMENT",
                                      help="extra fragment from guest-kernel-config/ (repeatable)"))
GRANULE = Option(("--granule",), dict(action="append", default=[], choices=GRANULE_NAMES,
                                      help=f"only tests of this granule (repeatable); tests without "
                                      f"a granule mark use {DEFAULT_GRANULE} tables"))
RESULTS = Option(("--results",), dict(type=Path, default=None,
                                      help="results directory (default: results/ of the checkout)"))
NO_KUNIT = Option(("--no-kunit",), dict(action="store_true", help="do not collect KUnit suites "
                                        "(*.kunit files boot a guest at collection)"))

BUILD_OPTIONS = (TREE, TOOLCHAIN, KCONFIG)  # what selects a kernel build
PLUGIN_OPTIONS = BUILD_OPTIONS + (RESULTS, GRANULE, NO_KUNIT)


@dataclass(frozen=True)
class SuiteOptions:
    """How to build and run the suite, independent of which tree (a workflow supplies that)."""

    toolchain: str = "buildroot"
    fragments: tuple[str, ...] = ()
    pytest_args: tuple[str, ...] = ()  # e.g. test node ids, -k, -x, -n 2
    cache: Path | None = None
    granules: tuple[str, ...] = field(default=())


def build_args(tree: Path | None, toolchain: str, fragments: tuple[str, ...] | list[str]) -> list[str]:
    """The BUILD_OPTIONS as arguments (for a child process, or pytest inside this one)."""
    out = ["--toolchain", toolchain]
    if tree is not None:
        out += ["--tree", str(tree)]
    for frag in fragments:
        out += ["--kconfig", frag]
    return out


def run_argv(tree: Path | None, options: SuiteOptions, results: Path) -> list[str]:
    """A child `iopt-hil run` (a fresh pytest session with its own results directory)."""
    argv = [sys.executable, "-m", "harness", "run", *build_args(tree, options.toolchain,
                                                                options.fragments),
            "--results", str(results)]
    argv += [f"--granule={g}" for g in options.granules]
    return argv + list(options.pytest_args)
