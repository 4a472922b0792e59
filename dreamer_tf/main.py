"""Trains (or evaluates) a DreamerV3 agent: ``python -m dreamer_tf.main --env=atari_pong``.

Flags set the most used config keys directly; every other key is reachable with
``--override=dotted.key=value``. The resolved config is written to
``<logdir>/config.yaml``; rerunning the same command resumes from the logdir.
"""

from __future__ import annotations

import errno
import functools
import logging
import sys

from absl import app, flags

FLAGS = flags.FLAGS

flags.DEFINE_string(
  "env",
  "atari_pong",
  "Environment name, e.g. atari_pong, atari100k_breakout, dmc_walker_walk, "
  "dmcproprio_cartpole_balance, crafter_reward, gym_CartPole-v1, bsuite_catch/0.",
)
flags.DEFINE_list(
  "configs",
  [],
  "Presets from configs/ applied after the domain preset, in order "
  "(sizes xs, s, m, l, xl; debug; or a path to a YAML file).",
)
flags.DEFINE_multi_string("override", [], "Set one config key: --override=model.deter=512 (repeatable).")
flags.DEFINE_string("logdir", None, "Run directory; default ./logdir/<env>. An existing run there is resumed.")
flags.DEFINE_float("steps", None, "Agent (policy) steps to train for (run.steps).")
flags.DEFINE_integer("seed", None, "Random seed (run.seed).")
flags.DEFINE_integer("envs", None, "Parallel environment copies (run.envs).")
flags.DEFINE_enum(
  "precision",
  None,
  ["float32", "mixed_float16", "mixed_bfloat16", "auto"],
  "Compute precision (run.precision); float32 is fastest on CPU; auto (the nature default): "
  "mixed_bfloat16 on a GPU or TPU, float32 on a CPU.",
)
flags.DEFINE_bool("jit_compile", None, "Compile the train step with XLA (run.jit_compile).")
flags.DEFINE_float("checkpoint_every_secs", None, "Seconds between checkpoints (run.checkpoint_every_secs).")
flags.DEFINE_integer("eval_every", None, "Agent steps between evaluations, 0 disables (run.eval_every).")
flags.DEFINE_integer("eval_episodes", None, "Episodes per evaluation (run.eval_episodes).")
flags.DEFINE_bool("eval_greedy", None, "Evaluate with the actor's mode instead of sampling (run.eval_greedy).")
flags.DEFINE_bool("eval_only", False, "Only evaluate the policy of --checkpoint (or the logdir's latest).")
flags.DEFINE_string("checkpoint", None, "Checkpoint directory to restore (default: the logdir's latest).")
flags.DEFINE_enum(
  "strategy", None, ["default", "mirrored", "multi_worker", "tpu"], "tf.distribute strategy (run.strategy)."
)
flags.DEFINE_enum("replay", None, ["local", "reverb"], "Replay backend (replay.backend).")
flags.DEFINE_string("tpu", None, "TPU name or address for the TPU cluster resolver.")
flags.DEFINE_string("reverb_address", None, "Address of a running Reverb server (replay.reverb_address).")
flags.DEFINE_bool("parallel_envs", None, "Run environments in subprocesses (run.parallel_envs).")
# Read from the command line by dreamer_tf/_quiet.py when the package is imported (before TensorFlow
# loads); defined here so that absl accepts it and --help lists it.
flags.DEFINE_bool(
  "verbose",
  False,
  "Keep the libraries' start-up output (TensorFlow's C++ log, gym's banner, MuJoCo's GLFW warnings) "
  "and their environment defaults untouched; same as DREAMER_TF_VERBOSE=1.",
)

# Flag -> config key. Flags left unset keep the presets' values.
_FLAG_KEYS = {
  "steps": "run.steps",
  "seed": "run.seed",
  "envs": "run.envs",
  "precision": "run.precision",
  "jit_compile": "run.jit_compile",
  "checkpoint_every_secs": "run.checkpoint_every_secs",
  "eval_every": "run.eval_every",
  "eval_episodes": "run.eval_episodes",
  "eval_greedy": "run.eval_greedy",
  "strategy": "run.strategy",
  "replay": "replay.backend",
  "reverb_address": "replay.reverb_address",
  "parallel_envs": "run.parallel_envs",
}


def resolve_config(env_name, presets, overrides, flag_values=None):
  """Loads the config for ``env_name``: domain preset, presets, overrides, then flags."""
  from dreamer_tf import config as config_lib

  flag_values = flag_values or {}
  overrides = list(overrides) + [
    f"{key}={flag_values[name]}" for name, key in _FLAG_KEYS.items() if flag_values.get(name) is not None
  ]
  has_image = None
  if env_name.startswith("gym_"):
    from dreamer_tf import envs

    base = config_lib.load_config(env_name, presets, overrides)
    has_image = envs.has_image_observation(env_name, base)
  return config_lib.load_config(env_name, presets, overrides, has_image=has_image)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.getLogger().setLevel(logging.INFO)
  from dreamer_tf.errors import UserError

  try:
    _main()
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except OSError as e:  # A full or read-only disk while training (logs, videos, exports).
    if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
      raise
    print(
      f"error: {e.strerror} writing {e.filename or 'the logdir'}; free space (or remount) and rerun the same "
      "command to resume from the last complete checkpoint",
      file=sys.stderr,
    )
    sys.exit(2)


def _main():
  from dreamer_tf.envs import parse_name
  from dreamer_tf.training.checkpointer import SignalHandler
  from dreamer_tf.training.loop import Trainer

  parse_name(FLAGS.env)  # Unknown suites fail here, before TensorFlow starts up.
  flag_values = {name: FLAGS[name].value for name in _FLAG_KEYS}
  config = resolve_config(FLAGS.env, FLAGS.configs, FLAGS.override, flag_values)
  logdir = FLAGS.logdir or f"./logdir/{FLAGS.env.replace('/', '_')}"
  from dreamer_tf import distribute

  if config.run.logical_cpus > 1:  # Before anything initialises TensorFlow's devices.
    distribute.split_cpu(config.run.logical_cpus)
  strategy = distribute.make_strategy(config.run.strategy, tpu=FLAGS.tpu)
  trainer = Trainer(config, FLAGS.env, logdir, strategy=strategy)
  try:
    trainer.restore(FLAGS.checkpoint)
    if FLAGS.eval_only:
      if trainer.restored_from is None:
        from dreamer_tf.errors import UserError

        raise UserError(f"--eval_only needs a checkpoint, but {logdir} has none: pass --checkpoint=PATH")
      results = trainer.evaluate(config.run.eval_episodes)
      returns = [r["return"] for r in results]
      print(
        f"eval: {len(returns)} episodes, mean return {sum(returns) / max(1, len(returns)):.2f}, "
        f"returns {[round(x, 2) for x in returns]}"
      )
      return
    with SignalHandler() as signals:
      trainer.run(signals=signals)
    print(f"done: {trainer.agent_steps} agent steps, {trainer.updates} updates; logdir {trainer.logdir}")
  finally:
    trainer.close()


def run():
  """Console entry point; starts absl under TF-Agents' multiprocessing handler."""
  from tf_agents.system import system_multiprocessing

  system_multiprocessing.handle_main(functools.partial(app.run, main))


if __name__ == "__main__":
  run()
