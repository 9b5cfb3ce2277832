"""The wheel carries what an installed harness needs: every subpackage, the config fragments,
the module sources and the guest suite under harness/data/, the command and the pytest plugin."""
from __future__ import annotations

import zipfile
from configparser import ConfigParser

import pytest

from harness.resources import CHECKOUT_HOMES

from .wheelbuild import REPO, build_wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_wheel_holds_the_shipped_data_where_resources_looks(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for data, home in CHECKOUT_HOMES.items():
        shipped = sorted(p.name for p in (REPO / home).iterdir()
                         if p.is_file() and not p.name.endswith(".pyc"))
        assert shipped, home
        missing = [n for n in shipped if f"harness/data/{data}/{n}" not in names]
        assert not missing, f"{home} files missing from the wheel: {missing}"


def test_wheel_holds_every_harness_module(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    package = REPO / "harness"
    missing = [str(p.relative_to(REPO)) for p in package.rglob("*.py")
               if "__pycache__" not in p.parts and str(p.relative_to(REPO)) not in names]
    assert not missing, f"modules missing from the wheel: {missing}"


def test_wheel_declares_the_command_and_the_plugin(wheel):
    with zipfile.ZipFile(wheel) as z:
        text = next(z.read(n).decode() for n in z.namelist() if n.endswith("entry_points.txt"))
    entry = ConfigParser()
    entry.read_string(text)
    assert entry["console_scripts"]["iopt-hil"] == "harness.cli:main"
    # named after the module: a conftest.py listing "harness.plugin" then finds it registered
    assert dict(entry["pytest11"]) == {"harness.plugin": "harness.plugin"}
