"""Checks shared by the environment tests: TimeStep and action-spec contracts."""

import numpy as np
from tf_agents.trajectories import time_step as ts


def check_step(env, step):
  """Asserts that a TimeStep conforms to the env's specs and the project's dtypes."""
  spec = env.observation_spec()
  assert set(step.observation) == set(spec)
  for key, value in step.observation.items():
    value = np.asarray(value)
    assert value.dtype == spec[key].dtype, key
    assert value.shape == spec[key].shape, key
    if key == "image":
      assert value.dtype == np.uint8 and value.ndim == 3
    else:
      assert value.dtype == np.float32
  assert np.asarray(step.reward).dtype == np.float32
  assert np.asarray(step.discount).dtype == np.float32
  assert step.step_type in (ts.StepType.FIRST, ts.StepType.MID, ts.StepType.LAST)


def check_action_spec(env):
  spec = env.action_spec()
  if spec.dtype == np.int32:
    assert spec.shape == () and spec.minimum == 0 and spec.maximum >= 1
  else:
    assert spec.dtype == np.float32 and len(spec.shape) == 1
    assert np.all(spec.minimum == -1.0) and np.all(spec.maximum == 1.0)


def run_until_last(env, policy, max_steps):
  """Steps until a LAST step; returns (steps taken, the LAST TimeStep)."""
  for count in range(1, max_steps + 1):
    step = env.step(policy())
    if step.is_last():
      return count, step
  raise AssertionError(f"no LAST step within {max_steps} steps")
