"""Environments: every suite as a TF-Agents PyEnvironment with the paper's preprocessing.

``make_env(name, config, seed)`` builds one environment from ``--env=NAME``;
``make_batched_env`` builds ``--envs=N`` copies; ``EpisodeTracker`` turns the batched
TimeSteps into finished-episode statistics. See docs/environments.md.
"""

# dm_control picks its OpenGL backend on import: dreamer_tf/_quiet.py (run when the package is
# imported) chooses the headless one (EGL, else OSMesa) when no display is set.
from dreamer_tf.envs.factory import (
  SUITES,
  env_tensor_specs,
  has_image_observation,
  make_batched_env,
  make_env,
  parse_name,
  tensor_specs,
)
from dreamer_tf.envs.tracker import EpisodeTracker

__all__ = [
  "SUITES",
  "EpisodeTracker",
  "env_tensor_specs",
  "has_image_observation",
  "make_batched_env",
  "make_env",
  "parse_name",
  "tensor_specs",
]
