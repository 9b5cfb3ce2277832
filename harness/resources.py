"""Files the harness ships besides its code: config fragments, the Rust module, the guest suite.

An installed wheel carries them as package data under `harness/data/`; a source checkout keeps
them in their top-level homes (`guest-kernel-config/`, `images/module/`, `tests/guest/`), where a
developer edits them. Both are found through `importlib.resources`, so nothing depends on where
the package happens to be imported from.
"""
from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

# Package data name -> where a source checkout keeps it (pyproject.toml maps them the same way).
CHECKOUT_HOMES = {"kconfig": "guest-kernel-config", "module": "images/module", "suite": "tests/guest"}


def _package_dir() -> Path:
    with as_file(files("harness")) as path:  # a plain directory for wheels and checkouts alike
        return Path(path)


def checkout() -> Path | None:
    """The source checkout the package runs from, or None when it is installed from a wheel."""
    parent = _package_dir().parent
    return parent if (parent / "pyproject.toml").is_file() and (parent / "images").is_dir() else None


def data_dir(name: str) -> Path:
    """The directory of one kind of shipped data (a key of CHECKOUT_HOMES)."""
    installed = _package_dir() / "data" / name
    if installed.is_dir():
        return installed
    root = checkout()
    if root is None:
        raise FileNotFoundError(f"harness data {name!r} is missing from this installation")
    return root / CHECKOUT_HOMES[name]


def fragments_dir() -> Path:
    return data_dir("kconfig")


def module_dir() -> Path:
    return data_dir("module")


def suite_dir() -> Path:
    """The guest suite that `iopt-hil run` runs by default."""
    return data_dir("suite")


def results_default() -> Path:
    """`results/` of the checkout, or of the current directory for an installed harness."""
    root = checkout()
    return (root if root is not None else Path.cwd()) / "results"
