"""Fixtures shared by the agent tests."""

import pytest
import tensorflow as tf


@pytest.fixture
def precision(request):
  """Sets the Keras mixed-precision policy ``request.param`` (indirect parametrization) for one test.

  Yields the policy's name; float32 is restored afterwards, also when the test fails.
  """
  tf.keras.mixed_precision.set_global_policy(request.param)
  try:
    yield request.param
  finally:
    tf.keras.mixed_precision.set_global_policy("float32")
