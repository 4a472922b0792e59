"""Shared fixtures of the export tests: a training logdir, its export and a TF-only subprocess."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import json
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from dreamer_tf import export
from dreamer_tf.agent.dreamer_agent import DreamerAgent
from dreamer_tf.config import load_config, save_config
from dreamer_tf.envs import env_tensor_specs
from dreamer_tf.training.checkpointer import Checkpointer

ENV = "atari100k_pong"
TRAIN_STEP = 123
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


def debug_config():
  return load_config(ENV, ["debug"])


def build_agent(config, seed=0):
  return DreamerAgent(*env_tensor_specs(ENV, config), config, seed=seed)


@pytest.fixture(scope="session")
def logdir(tmp_path_factory):
  """A training run's logdir as the trainer writes it: config.yaml, run.json and a checkpoint.

  The agent's variables are perturbed so that a restore from the checkpoint is distinguishable
  from a freshly initialised agent.
  """
  tf.keras.utils.set_random_seed(1)
  path = tmp_path_factory.mktemp("logdir")
  config = debug_config()
  agent = build_agent(config)
  rng = np.random.default_rng(0)
  for variable in agent.world_model.variables + agent.actor_critic.actor.variables:
    variable.assign(variable + rng.normal(0, 0.05, variable.shape).astype(np.float32))
  agent.train_step_counter.assign(TRAIN_STEP)
  save_config(config, path)
  (path / "run.json").write_text(json.dumps({"env": ENV}))
  Checkpointer(path / "checkpoints", keep=2, agent=agent).save(1000)
  return path


@pytest.fixture(scope="session")
def restored(logdir):
  """``(agent, config, env_name, checkpoint)`` restored from the logdir."""
  return export.restore_agent(logdir)


@pytest.fixture(scope="session")
def model_base(restored, tmp_path_factory):
  """A model base path holding one exported version of the restored agent."""
  agent, config, env_name, _ = restored
  base = tmp_path_factory.mktemp("saved_models") / "pong"
  export.export_policy(agent, config, env_name, base)
  return base


@pytest.fixture(scope="session")
def version_dir(model_base):
  return model_base / str(export.list_versions(model_base)[-1])
