"""Fixtures shared by several test files."""

import sys

import pytest

from recsys.paths import PROJECT_ROOT
from recsys.train.runs import RunRegistry


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A run registry in a tmp folder whose detached workers also know the test-only toy recipe."""
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    monkeypatch.setenv("RECSYS_EXTRA_RECIPES", "tests.toy_recipe")
    monkeypatch.setenv("RECSYS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("PYTHONPATH", str(PROJECT_ROOT))
    return RunRegistry(tmp_path / "runs")
