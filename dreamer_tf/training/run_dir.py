"""The run directory: created for a new run, checked before a resume, with the resolved config.

``<logdir>/run.json`` records the environment and the generation of the model
(``{"env": "atari_pong", "generation": "nature"}``, see :func:`dreamer_tf.config.generation`);
``<logdir>/config.yaml`` the resolved config.
"""

from __future__ import annotations

import json
import os
import pathlib

from dreamer_tf.config import Config, generation, load_saved_config, save_config
from dreamer_tf.errors import UserError

# Config sections that must match when a logdir is resumed: they shape the networks and data.
RESUME_MUST_MATCH = ("model", "env", "replay.batch_size", "replay.batch_length")


def _get(config, dotted):
  node = config
  for part in dotted.split("."):
    node = node[part]
  return node.to_dict() if isinstance(node, Config) else node


def prepare_logdir(logdir: str | os.PathLike, config: Config, env_name: str) -> pathlib.Path:
  """Creates the logdir, or checks that an existing run in it is compatible.

  A logdir that holds a run with another environment or a differently shaped
  model (the other generation's included) is refused with a one-line
  :class:`UserError`, and nothing in it is changed. The resolved config is
  written to ``<logdir>/config.yaml``, the environment and the generation to
  ``<logdir>/run.json``.
  """
  logdir = pathlib.Path(logdir)
  run_file = logdir / "run.json"
  if run_file.exists():
    previous = json.loads(run_file.read_text())
    if previous.get("env") != env_name:
      raise UserError(
        f"logdir {logdir} holds a run of --env={previous.get('env')}, not {env_name}: "
        "use another --logdir or the same --env"
      )
    config_file = logdir / "config.yaml"
    differs = None
    if config_file.exists():
      old = load_saved_config(config_file)
      differs = next((key for key in RESUME_MUST_MATCH if _get(old, key) != _get(config, key)), None)
    elif previous.get("generation", generation(config)) != generation(config):
      differs = "model"  # Without its config.yaml a run still records its generation.
    if differs:
      raise UserError(
        f"logdir {logdir} holds a run with a different {differs} config; resume with the same "
        "--configs/--override or use another --logdir"
      )
  try:
    logdir.mkdir(parents=True, exist_ok=True)
    probe = logdir / ".write_test"
    probe.write_text("ok")
    probe.unlink()
  except OSError as e:
    raise UserError(f"cannot write to logdir {logdir}: {e.strerror}; choose a writable --logdir") from None
  save_config(config, logdir)
  tmp = run_file.with_suffix(".tmp")
  tmp.write_text(json.dumps({"env": env_name, "generation": generation(config)}))
  os.replace(tmp, run_file)
  return logdir
