"""Fixtures shared by several test files."""

import sys

import pytest

from recsys.paths import PROJECT_ROOT, cache_dir
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


@pytest.fixture(scope="session")
def prepared():
    """The cache after ``python -m recsys prepare`` (the ONNX encoders, the serving pack): built if missing.

    The install command runs it; here too, so a test session started without it still tests the
    path a user gets. A few hashes (~2 s) when already built, about 30 s when not.
    """
    from recsys.videos.fastserve import prepare

    prepare()
    return cache_dir()
