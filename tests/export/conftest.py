"""Session fixtures of the export tests: a trained-looking logdir, its agent and an export, of each generation.

The fixtures are parametrized by ``generation`` (``2023``: ``--configs=debug``; ``nature``: the current
generation, ``--configs=nature,debug``), so every test that uses them runs for both. A test that
does not depend on the generation pins it with
``@pytest.mark.parametrize("generation", ["2023"], indirect=True)``.
"""

import numpy as np
import pytest
import tensorflow as tf
from export_helpers import ENV, GENERATIONS, TRAIN_STEP, build_agent, debug_config

from dreamer_tf import export
from dreamer_tf.training.checkpointer import Checkpointer
from dreamer_tf.training.run_dir import prepare_logdir


def _make_logdir(path, generation):
  """A training run's logdir as the trainer writes it: config.yaml, run.json and a checkpoint.

  The agent's variables are perturbed so that a restore from the checkpoint is distinguishable
  from a freshly initialised agent.
  """
  tf.keras.utils.set_random_seed(1)
  config = debug_config(generation)
  prepare_logdir(path, config, ENV)
  agent = build_agent(config)
  rng = np.random.default_rng(0)
  for variable in agent.world_model.variables + agent.actor_critic.actor.variables:
    variable.assign(variable + rng.normal(0, 0.05, variable.shape).astype(np.float32))
  agent.train_step_counter.assign(TRAIN_STEP)
  Checkpointer(path / "checkpoints", keep=2, agent=agent).save(1000)
  return path


@pytest.fixture(scope="session")
def logdirs(tmp_path_factory):
  """``logdirs(generation)``: that generation's logdir, made once in the session."""
  made = {}

  def get(generation):
    if generation not in made:
      made[generation] = _make_logdir(tmp_path_factory.mktemp(f"logdir_{generation}"), generation)
    return made[generation]

  return get


@pytest.fixture(scope="session", params=list(GENERATIONS))
def generation(request):
  return request.param


@pytest.fixture(scope="session")
def logdir(logdirs, generation):
  return logdirs(generation)


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
