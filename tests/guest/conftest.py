"""Hypothesis profiles for the guest sequences: `default` stays fast, `long` soaks, and
`failfast` (a run that stops at its first failure, `-x`) reports a failing example unshrunk."""
from hypothesis import HealthCheck, Phase, settings

_common = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("default", max_examples=8, stateful_step_count=15, **_common)
settings.register_profile("long", max_examples=300, stateful_step_count=60, **_common)
# Shrinking a failing sequence replays it in the guest hundreds of times (50 s on 6 Dec): under
# -x the other guests' workers wait for it before the run can stop. The failure still prints
# the sequence and a @reproduce_failure blob; rerun the test alone to shrink it.
settings.register_profile("failfast", settings.get_profile("default"),
                          phases=[p for p in Phase if p not in (Phase.shrink, Phase.explain)])
settings.load_profile("default")


def pytest_configure(config) -> None:
    if config.getoption("maxfail") and config.getoption("hypothesis_profile") is None:
        settings.load_profile("failfast")

# Run order (a stable sort of the collected items): the quick tests that any break of the
# io-pgtable contract trips first, so that `-x` gives a verdict on a broken edit in seconds;
# the heavy limit and fuzz tests last. Files not named here run in between, alphabetically.
# The tests that need a guest of two vCPUs (`vcpus(2)`) come right after the first file, side by
# side: pytest-xdist's worksteal hands each worker a contiguous share of this order and steals
# from a share's end, so they all run on the first worker, which boots the one 2-vCPU guest of
# the run (each boot costs ~2 s of a host core), and the longest of them (the races) starts first.
FIRST = ("test_map_basic.py", "test_contract.py", "test_matrix.py", "test_sequences.py")
LAST = ("test_fuzz.py", "test_hardening.py", "test_debug_kernel.py")


def _rank(item) -> float:
    name = item.path.name
    marker = item.get_closest_marker("vcpus")
    if marker is not None and marker.args[0] > 1:
        return 0.5
    if name in FIRST:
        return FIRST.index(name)
    if name in LAST:
        return len(FIRST) + 1 + LAST.index(name)
    return len(FIRST)


def pytest_collection_modifyitems(items) -> None:
    items.sort(key=_rank)
