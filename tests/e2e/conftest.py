"""E2E runs take real seconds each: most run on SQLite only; the main one runs on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.csms.conftest import db_url  # noqa: F401 - a fresh SQLite / PostgreSQL database per test


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database."""
    return f"sqlite:///{tmp_path / 'csms.db'}"
