"""Shared pytest fixtures: the third-party data folder and small generated volumes."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

DATA_ENV = "VOXELDOSIMETRY_TEST_DATA"


@pytest.fixture(scope="session")
def test_data_dir() -> Path:
    """The folder named by VOXELDOSIMETRY_TEST_DATA; skips the test with the reason when absent."""
    value = os.environ.get(DATA_ENV)
    if not value:
        pytest.skip(f"{DATA_ENV} is not set: real-data tests need the shared third-party data folder "
                    "(.ci/run sets it to ../shared/data).")
    path = Path(value)
    if not path.is_dir():
        pytest.skip(f"{DATA_ENV}={value} is not a folder.")
    return path


def require_data(test_data_dir: Path, *relative: str) -> Path:
    """Path of a file inside the data folder; skips with the reason when the file is missing."""
    path = test_data_dir.joinpath(*relative)
    if not path.exists():
        pytest.skip(f"{path} is missing from the test data folder.")
    return path


@pytest.fixture
def oblique_direction() -> np.ndarray:
    """A proper rotation (15° about z, then 10° about x) for geometry tests."""
    a, b = np.deg2rad(15.0), np.deg2rad(10.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx
