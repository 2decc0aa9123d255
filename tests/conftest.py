"""Test-wide settings.

Hypothesis explores new random examples on every local run; in CI (``CI`` set) it runs a fixed,
derandomized set so that a green main stays green, and any failure it prints can be replayed.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
