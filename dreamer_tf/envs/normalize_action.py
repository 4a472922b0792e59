"""Continuous action normalization: the agent acts in [-1, 1], the environment in its own box."""

from __future__ import annotations

import numpy as np
from tf_agents.specs import array_spec


class NormalizeAction:
  """Maps actions in [-1, 1] to an environment's bounds, clipping first.

  Dimensions with infinite bounds cannot be scaled; they pass through unchanged
  (after clipping to [-1, 1], as the agent's actions are bounded anyway).

  Args:
    low: Lower bounds of the environment's action box (any shape).
    high: Upper bounds, same shape.
    name: Name of the resulting action spec.
  """

  def __init__(self, low, high, name: str = "action"):
    self.low = np.asarray(low, np.float64)
    self.high = np.broadcast_to(np.asarray(high, np.float64), self.low.shape)
    self.shape = self.low.shape
    self.finite = np.isfinite(self.low) & np.isfinite(self.high)
    # Unbounded dimensions use [-1, 1] as their box, i.e. the identity.
    self._low = np.where(self.finite, self.low, -1.0)
    self._high = np.where(self.finite, self.high, 1.0)
    self.spec = array_spec.BoundedArraySpec(
      (int(np.prod(self.shape, dtype=np.int64)),), np.float32, -1.0, 1.0, name=name
    )

  def __call__(self, action) -> np.ndarray:
    """Returns the environment action (float64, the box's shape) for an agent action."""
    action = np.clip(np.asarray(action, np.float64).reshape(self.shape), -1.0, 1.0)
    return self._low + (action + 1.0) * 0.5 * (self._high - self._low)
