"""The pytest plugin, the only pytest-aware part of the harness: hooks, fixtures and the KUnit
collector (`kunit_items`, a plugin of its own that `hooks.pytest_configure` registers). Registered through the `pytest11` entry point (an installed harness) or from the
checkout's conftest.py. (PYTEST_DONT_REWRITE: the CLI imports it before pytest starts, and it
asserts nothing that needs pytest's assertion rewriting.)"""
from .fixtures import (dma_bench, guest, guest_manager, guest_pool, kernel_build, kernel_log,
                       module, pgtable, qmp, ssh)
from .hooks import (pytest_addoption, pytest_collection_modifyitems, pytest_configure,
                    pytest_configure_node, pytest_runtest_call, pytest_runtest_makereport,
                    pytest_runtest_protocol,
                    pytest_sessionfinish)

__all__ = ["dma_bench", "guest", "guest_manager", "guest_pool", "kernel_build", "kernel_log",
           "module", "pgtable", "qmp", "ssh",
           "pytest_addoption", "pytest_collection_modifyitems", "pytest_configure",
           "pytest_configure_node",
           "pytest_runtest_call", "pytest_runtest_makereport", "pytest_runtest_protocol",
           "pytest_sessionfinish"]
