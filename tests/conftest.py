"""Shared test settings: headless matplotlib, the hypothesis profiles, and the fixtures of
an S3 server (s3_support.py) for the tests of URLs.

Profiles: "ci" (the default: few examples, derandomized, fast) and "thorough"
(`pytest --hypothesis-profile=thorough`: many random examples).
"""

import matplotlib
from hypothesis import HealthCheck, settings
from s3_support import s3_bucket, s3_endpoint, s3_env  # noqa: F401 (fixtures)

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
