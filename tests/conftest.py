"""Shared test settings: headless matplotlib and the hypothesis profiles.

Profiles: "ci" (the default: few examples, derandomized, fast) and "thorough"
(`pytest --hypothesis-profile=thorough`: many random examples).
"""

import matplotlib
from hypothesis import HealthCheck, settings

matplotlib.use("Agg")  # headless: plots in tests never need a screen

settings.register_profile(
    "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow],
    derandomize=True)
settings.register_profile(
    "thorough", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pytest_configure(config):
    # the command line's --hypothesis-profile wins; otherwise the fast profile
    if not config.getoption("hypothesis_profile", default=None):
        settings.load_profile("ci")
