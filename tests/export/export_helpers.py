"""Helpers of the export tests: constants, a debug agent and a TensorFlow-only subprocess."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pathlib
import subprocess
import sys
import textwrap

from dreamer_tf.agent.dreamer_agent import DreamerAgent
from dreamer_tf.config import load_config
from dreamer_tf.envs import env_tensor_specs

ENV = "atari100k_pong"
TRAIN_STEP = 123
# The presets of each generation's tiny agent: both have 64x64x3 images (the 2023 and the current
# atari100k block), deter 32, 4 x 4 latents and Pong's 6 actions, so the signatures' shapes agree.
GENERATIONS = {"2023": ["debug"], "nature": ["nature", "debug"]}
REPO = pathlib.Path(__file__).resolve().parents[2]
SAVED_MODEL_CLI = str(pathlib.Path(sys.executable).parent / "saved_model_cli")

# Prepended to every TF-only subprocess: the packages that a serving machine does not have
# cannot be imported, although this virtual environment holds them.
BLOCK_PRELUDE = textwrap.dedent(
  """
  import importlib.abc, sys
  BLOCKED = ("tensorflow_probability", "tf_agents", "dreamer_tf", "gym", "gymnasium", "ale_py", "reverb")
  class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
      if name.split(".")[0] in BLOCKED:
        raise ModuleNotFoundError(f"No module named {name!r} (blocked: TensorFlow-only process)")
      return None
  sys.meta_path.insert(0, _Blocker())
  """
)


def run_tf_only(script: str, *args, cwd) -> subprocess.CompletedProcess:
  """Runs ``script`` in a fresh Python where only TensorFlow (and NumPy) can be imported."""
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  code = BLOCK_PRELUDE + textwrap.dedent(script)
  result = subprocess.run(
    [sys.executable, "-c", code, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
  )
  assert result.returncode == 0, f"TF-only subprocess failed:\n{result.stdout}\n{result.stderr[-4000:]}"
  return result


def debug_config(generation="2023"):
  return load_config(ENV, GENERATIONS[generation])


def build_agent(config, seed=0):
  return DreamerAgent(*env_tensor_specs(ENV, config), config, seed=seed)
