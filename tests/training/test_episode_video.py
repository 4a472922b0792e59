"""Tests of the episode video recorder."""

import numpy as np
from tf_agents.trajectories import time_step as ts

from dreamer_tf.training.episode_video import EpisodeVideoRecorder


def batched_step(step_type, value, num_envs=2):
  image = np.full((num_envs, 4, 4, 3), value, np.uint8)
  return ts.TimeStep(
    np.full(num_envs, step_type, np.int32),
    np.zeros(num_envs, np.float32),
    np.ones(num_envs, np.float32),
    {"image": image},
  )


def test_records_one_whole_episode_of_env_0_after_arming():
  recorder = EpisodeVideoRecorder(max_frames=10)
  assert recorder.add(batched_step(ts.StepType.FIRST, 1)) is None  # not armed: ignored
  recorder.arm()
  assert recorder.add(batched_step(ts.StepType.MID, 2)) is None  # waits for the next FIRST
  assert recorder.add(batched_step(ts.StepType.FIRST, 3)) is None
  assert recorder.add(batched_step(ts.StepType.MID, 4)) is None
  frames = recorder.add(batched_step(ts.StepType.LAST, 5))
  assert frames.shape == (3, 4, 4, 3) and frames.dtype == np.uint8
  assert list(frames[:, 0, 0, 0]) == [3, 4, 5]
  assert not recorder.armed
  assert recorder.add(batched_step(ts.StepType.FIRST, 6)) is None


def test_long_episodes_are_cut_at_max_frames():
  recorder = EpisodeVideoRecorder(max_frames=3)
  recorder.arm()
  recorder.add(batched_step(ts.StepType.FIRST, 0))
  for value in range(1, 10):
    recorder.add(batched_step(ts.StepType.MID, value))
  frames = recorder.add(batched_step(ts.StepType.LAST, 10))
  assert list(frames[:, 0, 0, 0]) == [0, 1, 2]
