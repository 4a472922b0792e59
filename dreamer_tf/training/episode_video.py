"""Records one training episode of the first environment as a video for TensorBoard."""

from __future__ import annotations

import numpy as np
from tf_agents.trajectories import time_step as ts


class EpisodeVideoRecorder:
  """Collects the image frames of environment 0 for one whole episode when armed.

  Call :meth:`arm` when a video is due; recording starts at the next FIRST step
  of environment 0 and :meth:`add` returns the ``[T, H, W, C]`` uint8 frames
  when that episode ends (at most ``max_frames``, the rest are dropped).

  Args:
    key: The image observation key.
    max_frames: Longest video kept.
  """

  def __init__(self, key: str = "image", max_frames: int = 1000):
    self.key = key
    self.max_frames = max_frames
    self._armed = False
    self._frames: list[np.ndarray] | None = None

  def arm(self) -> None:
    self._armed = True

  @property
  def armed(self) -> bool:
    return self._armed or self._frames is not None

  def add(self, time_step) -> np.ndarray | None:
    """Adds a batched TimeStep; returns the episode's frames when it ends."""
    if not self.armed or not isinstance(time_step.observation, dict) or self.key not in time_step.observation:
      return None
    step_type = int(np.asarray(time_step.step_type).reshape(-1)[0])
    frame = np.asarray(time_step.observation[self.key])
    frame = frame[0] if frame.ndim == 4 else frame
    if self._armed and step_type == ts.StepType.FIRST:
      self._armed, self._frames = False, []
    if self._frames is None:
      return None
    if len(self._frames) < self.max_frames:
      self._frames.append(frame)
    if step_type == ts.StepType.LAST:
      frames, self._frames = np.stack(self._frames), None
      return frames
    return None
