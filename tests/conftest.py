"""Hypothesis profiles: "ci" (default, fast) and "thorough" (pytest --hypothesis-profile=thorough)."""

import os

import matplotlib
from hypothesis import HealthCheck, settings

matplotlib.use("Agg")  # headless: plots in tests never need a screen

settings.register_profile(
    "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow],
    derandomize=True)
settings.register_profile(
    "thorough", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
