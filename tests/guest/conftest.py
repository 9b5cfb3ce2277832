"""Hypothesis profiles for the guest sequences: `default` stays fast, `long` soaks."""
from hypothesis import HealthCheck, settings

_common = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("default", max_examples=8, stateful_step_count=15, **_common)
settings.register_profile("long", max_examples=300, stateful_step_count=60, **_common)
settings.load_profile("default")
