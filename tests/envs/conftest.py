"""Shared helpers of the environment tests."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # Before anything imports dm_control.

import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent


@pytest.fixture(scope="session", autouse=True)
def toy_module_on_path():
  """Makes ``toy_gym_env`` importable, as a user's own package would be."""
  sys.path.insert(0, str(HERE))
  yield
  sys.path.remove(str(HERE))
