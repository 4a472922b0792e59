"""Runs the author's 2023 DreamerV3 release and dreamer_tf side by side on one task.

The reference is ``dreamerv3==1.5.0`` (the code behind arXiv 2301.04104v1), run from a virtual
environment of its own; none of its code is copied into dreamer_tf. Make that environment once
(a few minutes; Python 3.11, jax/jaxlib 0.4.13 on CPU)::

  python tools/parity.py setup-reference --venv=.venv-reference

then train both sides on the same task with the same settings (model size, train ratio, batch
size and length, envs, action repeat, steps, seeds) and compare::

  python tools/parity.py run --task=dmcproprio_cartpole_balance --seeds=0,1,2 --updates=500 \\
      --deter=128 --units=128 --layers=1 --mlp_layers=1 --mlp_units=128 --out=docs/parity/cartpole

The output directory gets ``returns.png`` (episode returns against agent steps, seeds as min-max
bands), ``diagnostics.png`` (world-model and actor-critic metrics against updates), and
``parity.json`` (per-bin mean returns and metrics of each side and seed, parameter counts,
seconds per update of each side measured in the same run, and the exact commands). Each run
keeps its logs under ``<runs>/<side>_seed<N>/`` (``--runs``, default ``<out>/runs``);
``python tools/parity.py report`` with the same arguments redraws the figures and the JSON from them.

Agent steps are counted alike on both sides: every ``env.step`` of every environment copy, each
environment's first reset included (the reference's step counter does so; its logged ``step``
is that counter times the action repeat).

``python tools/parity.py check-update --task=gym_CartPole-v1 ...`` takes the randomness out:
both sides start from the same parameters and train on one fixed batch with deterministic
latents, and their world-model updates must agree number for number (``tools/parity_update.py``).

The current generation (``--configs=nature``) is checked against the author's current code, a
checkout of danijar/dreamerv3 at e3f0224, in a venv of its own (Python 3.11, jax/jaxlib 0.4.33 on CPU)::

  python tools/parity.py setup-reference --generation=current --source=CHECKOUT --venv=.venv-reference-current
  python tools/parity.py check-update --generation=current --task=gym_CartPole-v1 --out=DIR

(``tools/parity_update_current.py``: the whole update, world model, imagination, actor, critic, replay
value loss and the one optimizer, number for number; ``--jit_compile`` compiles dreamer_tf's update with XLA.)
Learning side by side with it::

  python tools/parity.py run --generation=current --task=gym_goal_line_env:GoalLine-v0 --pythonpath=tests/learning \\
      --jit_compile --seeds=0,1,2 --updates=8000 --train_ratio=512 --envs=1 --batch_size=4 --batch_length=16 \\
      --deter=32 --units=32 --stoch=4 --classes=4 --out=DIR

runs the author's own ``dreamerv3/main.py`` train loop with its ``defaults`` config and these sizes
(``tools/parity_reference_current.py``) against ``python -m dreamer_tf.main --configs=nature`` with the same
overrides; every layer count, the optimizer, replay context and online replay stay each side's defaults.
Each run gets ``threads`` CPU threads (``OMP_NUM_THREADS``, ``TF_NUM_INTRAOP_THREADS``,
``TF_NUM_INTEROP_THREADS``); only the reference side gets JAX's ``XLA_FLAGS`` for them (``_run_env``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import re
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
LAUNCHER = pathlib.Path(__file__).resolve().parent / "parity_reference.py"
LAUNCHER_CURRENT = pathlib.Path(__file__).resolve().parent / "parity_reference_current.py"
DEFAULT_VENV = REPO / ".venv-reference"
OURS = "dreamer_tf"
REFERENCE = "reference"
SIDES = (OURS, REFERENCE)

# The reference venv (reference_install.md): the author's package without its pinned gym==0.19
# (no Python 3.11 build), the jax/optax versions of February 2023, tfp without its TF
# dependency, and what its imports really need.
REFERENCE_PIP = (
  ("--no-deps", "dreamerv3==1.5.0"),
  (
    "jax==0.4.13",
    "jaxlib==0.4.13",
    "optax==0.1.7",
    "chex==0.1.82",
    "numpy==1.26.4",
    "ruamel.yaml<0.18",
    "rich",
    "cloudpickle",
    "decorator",
    "gast",
    "dm-tree",
    "six",
    "scipy==1.11.4",
    "dm_control==1.0.50",
    "mujoco==3.17.0",
    "gymnasium==1.3.0",
  ),
  ("--no-deps", "tensorflow-probability==0.20.1"),
)
REFERENCE_CHECK = "import dreamerv3, jax, optax, tensorflow_probability, dm_control, gymnasium; print(jax.__version__)"

# The current code's venv (/work/shared/reference/reference_install_current.md): its requirements.txt for
# a CPU (jax without CUDA, no Atari packages); the code itself is the checkout, put on sys.path by the check.
DEFAULT_VENV_CURRENT = REPO / ".venv-reference-current"
CURRENT_PIP = (
  (
    "jax==0.4.33",
    "jaxlib==0.4.33",
    "numpy<2",
    "elements>=3.19.1",
    "ninjax>=3.5.1",
    "portal>=3.5.0",
    "granular>=0.20.3",
    "scope>=0.4.4",
    "optax",
    "chex",
    "einops",
    "jaxtyping",
    "av",
    "tqdm",
    "google-resumable-media>=2.7.2",
    # Its embodied/envs/dmc.py, for the dmcproprio_<domain>_<task> runs (the 2023 venv's versions).
    "dm_control==1.0.50",
    "mujoco==3.17.0",
  ),
)
# The files of danijar/dreamerv3 that the check runs, as of e3f0224 (the agent and its configs are unchanged
# since f8817c4, 2024-12-07): sha256, first 16 hex digits.
CURRENT_FILES = {
  "dreamerv3/agent.py": "adce8e4274bc098c",
  "dreamerv3/rssm.py": "d6d50166914e94fb",
  "dreamerv3/configs.yaml": "9dff9c7062e3e339",
  "embodied/jax/agent.py": "8b89eb35f974f9d3",
  "embodied/jax/heads.py": "437641cde21e7f9e",
  "embodied/jax/nets.py": "9a1c0c71ad7d3596",
  "embodied/jax/opt.py": "4b9c9aedc87a5f47",
  "embodied/jax/outs.py": "7e80691f175c71be",
  "embodied/jax/utils.py": "76cd112313a19dc8",
}
CURRENT_SOURCE_FILE = "dreamerv3_source.txt"  # In the venv: the checkout that setup-reference checked.


def current_source_problem(source: pathlib.Path | None) -> str | None:
  """Why ``source`` is not a checkout of danijar/dreamerv3 at e3f0224 (one line), or None."""
  import hashlib

  if source is None:
    return "no --source: pass a checkout of danijar/dreamerv3 at e3f0224"
  if not source.is_dir():
    return f"--source={source} is not a directory (a checkout of danijar/dreamerv3 at e3f0224)"
  for name, digest in CURRENT_FILES.items():
    path = source / name
    if not path.is_file():
      return f"--source={source} has no {name}: not a checkout of danijar/dreamerv3 at e3f0224"
    if hashlib.sha256(path.read_bytes()).hexdigest()[:16] != digest:
      return f"--source={source}: its {name} differs from danijar/dreamerv3 e3f0224's"
  return None


def setup_reference_current(venv: pathlib.Path, source: pathlib.Path, python: str = "python3.11") -> None:
  """Creates the current code's venv at ``venv`` for the checkout ``source`` and checks that it imports."""
  problem = current_source_problem(source)
  if problem:
    raise SystemExit(f"error: {problem}")
  if not (venv / "bin" / "python").exists():
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
  pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
  for args in CURRENT_PIP:
    print("+", shlex.join(["pip", "install", *args]), flush=True)
    out = subprocess.run([*pip, *args], capture_output=True, text=True)
    if out.returncode:
      print(out.stdout + out.stderr, flush=True)
      raise SystemExit(f"error: pip install failed (exit {out.returncode})")
  check = f"import sys; sys.path.insert(0, {str(source)!r}); import dreamerv3.agent, jax; print(jax.__version__)"
  out = subprocess.run(
    [str(venv / "bin" / "python"), "-c", check], capture_output=True, text=True, env=_ref_env(), cwd=str(venv)
  )
  if out.returncode:
    raise SystemExit(f"error: the current code does not import in {venv}: {out.stderr.strip().splitlines()[-1:]}")
  (venv / CURRENT_SOURCE_FILE).write_text(str(source) + "\n")
  print(f"current code's venv ready at {venv} (jax {out.stdout.strip()}, code {source})")


def current_missing(venv: pathlib.Path, source: pathlib.Path | None) -> tuple[str | None, pathlib.Path | None]:
  """``(why the current code cannot run, or None; the checkout to run)``: ``source`` or the one that
  setup-reference recorded in the venv."""
  if not (venv / "bin" / "python").exists():
    return (
      f"no current-code venv at {venv}: make it with `python tools/parity.py setup-reference --generation=current "
      f"--source=CHECKOUT --venv={venv}`",
      None,
    )
  if source is None and (venv / CURRENT_SOURCE_FILE).exists():
    source = pathlib.Path((venv / CURRENT_SOURCE_FILE).read_text().strip())
  problem = current_source_problem(source)
  return problem, None if problem else source.resolve()


def current_task_missing(venv: pathlib.Path, task: str) -> str | None:
  """Why the current code's venv cannot run ``task`` (one line), or None: a DMC task needs dm_control there
  (its ``embodied/envs/dmc.py``; venvs made before setup-reference installed it lack it)."""
  if _suite(task) != "dmc":
    return None
  out = subprocess.run(
    [str(venv / "bin" / "python"), "-c", "import dm_control.suite"], capture_output=True, text=True, env=_ref_env()
  )
  if out.returncode == 0:
    return None
  return (
    f"--task={task} needs dm_control in the current code's venv {venv}: rerun `python tools/parity.py "
    "setup-reference --generation=current --source=CHECKOUT` (it installs dm_control==1.0.50 and mujoco==3.17.0)"
  )


def setup_reference(venv: pathlib.Path, python: str = "python3.11") -> None:
  """Creates the reference's virtual environment at ``venv`` and checks that it imports."""
  if not (venv / "bin" / "python").exists():
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
  pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
  left_out = set()
  for args in REFERENCE_PIP:
    print("+", shlex.join(["pip", "install", *args]), flush=True)
    out = subprocess.run([*pip, *args], capture_output=True, text=True)
    shown, expected = split_pip_output(out.stdout + out.stderr)
    if out.returncode:
      shown = (out.stdout + out.stderr).splitlines()  # A real failure: everything pip said.
    left_out.update(expected)
    if shown:
      print("\n".join(shown), flush=True)
    if out.returncode:
      raise SystemExit(f"error: pip install failed (exit {out.returncode})")
  if left_out:
    print(
      f"note: pip reports dreamerv3 1.5.0's requirements {', '.join(sorted(left_out))} as not installed: "
      "expected, they are left out on purpose (gym==0.19 does not build on Python 3.11, tensorflow-cpu only "
      "feeds its TensorBoard writer, tensorflow-probability is installed --no-deps, crafter is not used)",
      flush=True,
    )
  out = subprocess.run(
    [str(venv / "bin" / "python"), "-c", REFERENCE_CHECK], check=True, capture_output=True, text=True, env=_ref_env()
  )
  print(f"reference venv ready at {venv} (jax {out.stdout.strip()})")


# dreamerv3 1.5.0's own requirements that REFERENCE_PIP leaves out on purpose; pip's resolver names them
# in an ERROR block after every install although the install succeeds.
EXPECTED_MISSING = ("crafter", "gym", "tensorflow-cpu", "tensorflow_probability")
_PIP_CONFLICT_HEADER = "ERROR: pip's dependency resolver does not currently take into account"
_PIP_MISSING = re.compile(r"^dreamerv3 1\.5\.0 requires ([A-Za-z0-9_.-]+?)(?:[=<>!~].*)?, which is not installed\.$")


def split_pip_output(text: str) -> tuple[list[str], list[str]]:
  """pip's output lines to show, and the expected missing requirements (:data:`EXPECTED_MISSING`) of its
  dependency-conflict block, which is left out when it names nothing else."""
  lines = text.splitlines()
  if not any(line.startswith(_PIP_CONFLICT_HEADER) for line in lines):
    return lines, []
  start = next(i for i, line in enumerate(lines) if line.startswith(_PIP_CONFLICT_HEADER))
  end = start + 1
  while end < len(lines) and lines[end] and not lines[end].startswith(("ERROR", "WARNING", "+")):
    end += 1
  matches = [_PIP_MISSING.match(line) for line in lines[start + 1 : end]]
  names = [m.group(1) for m in matches if m]
  if len(names) != end - start - 1 or not set(names) <= set(EXPECTED_MISSING):
    return lines, []  # Something unexpected in the block: show all of it.
  return lines[:start] + lines[end:], names


# What the tool imports beyond dreamer_tf's own requirements, per command: setup.py's `parity` extra.
TOOL_MODULES = {"run": ("matplotlib",), "report": ("matplotlib",)}


def check_modules(modules: Sequence[str]) -> None:
  """Exits with one line naming the fix when a module the tool needs is not installed."""
  import importlib.util

  missing = [name for name in modules if importlib.util.find_spec(name) is None]
  if missing:
    raise SystemExit(
      f"error: tools/parity.py needs {', '.join(missing)}, not installed here: run "
      "`pip install -e '.[parity]'` in dreamer_tf's checkout (the `parity` extra of setup.py)"
    )


def _ref_env() -> dict:
  env = dict(os.environ, MUJOCO_GL="egl", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
  env.pop("PYTHONPATH", None)
  return env


# --- settings ------------------------------------------------------------------------------------


def _suite(task: str) -> str:
  if task.startswith("dmcproprio_"):
    return "dmc"
  if task.startswith("gym_"):
    return "gym"
  raise SystemExit(
    f"error: --task={task} has no reference adapter in tools/parity.py; use dmcproprio_<domain>_<task> or "
    "gym_<id> with a 1-D Box observation (e.g. gym_CartPole-v1, gym_Pendulum-v1)"
  )


def reference_task(task: str) -> str:
  """The reference's name of a dreamer_tf task (``gymnasium_<id>`` is this tool's adapter)."""
  if _suite(task) == "dmc":
    return "dmc_" + task[len("dmcproprio_") :]
  return "gymnasium_" + task[len("gym_") :]


def _current(args: argparse.Namespace) -> bool:
  return getattr(args, "generation", "2023") == "current"


# The current code's replay holds windows of batch_length + replay_context steps (its default context 1).
CURRENT_CONTEXT = 1


def _chunk(args: argparse.Namespace) -> int:
  """Agent steps between the reference's checks of ``run.steps``: 2023 collects in chunks of 100; the
  current code's loop calls its driver for 10 steps at a time (all envs step together)."""
  return 100 if not _current(args) else -(-10 // args.envs) * args.envs


def prefill_steps(args: argparse.Namespace) -> int:
  """Agent steps of random prefill until replay holds one batch of windows (the reference's rule),
  rounded up to its collection chunks of 100 steps.

  ``--generation=current``: the steps until the reference's first update. Its collect policy acts from
  the first step (no random prefill) and it trains once its replay holds ``batch_size * batch_length``
  windows of ``batch_length + 1`` steps (``embodied/run/train.py``), checked at every step: with one env
  ``B * T + T`` steps (80 for 4 x 16). dreamer_tf's own rule (``dreamer_tf.replay.prefill_steps``) counts
  the same windows and starts at the same step."""
  if _current(args):
    length = args.batch_length + CURRENT_CONTEXT
    return args.envs * (math.ceil(args.batch_size * args.batch_length / args.envs) + length - 1)
  per_env = math.ceil(args.batch_size * args.batch_length / args.envs) + args.batch_length - 1
  return int(math.ceil(per_env * args.envs / 100) * 100)


def prefill_windows(args: argparse.Namespace) -> int:
  """dreamer_tf's ``run.train_start`` (windows, the 2023 ``train_fill``) that prefills exactly the
  reference's :func:`prefill_steps`: each env's stream of ``n`` steps holds ``n - batch_length + 1``
  windows, so its own rule (one batch of windows) stops up to 99 steps earlier than the reference's
  100-step chunks."""
  return prefill_steps(args) - args.envs * (args.batch_length - 1)


def total_steps(args: argparse.Namespace) -> int:
  """Agent steps for ``args.updates`` updates after the prefill at the train ratio, rounded up to the
  reference's collection chunks of 100 steps (it only stops between chunks)."""
  steps = prefill_steps(args) + math.ceil(args.updates * args.batch_size * args.batch_length / args.train_ratio)
  return int(math.ceil(steps / _chunk(args)) * _chunk(args))


def expected_updates(args: argparse.Namespace) -> dict:
  """The updates each side makes in :func:`total_steps`, after :func:`prefill_steps` of prefill.

  dreamer_tf allows ``floor(steps since the prefill * train_ratio / replayed steps per update)``.
  The reference's ``embodied.when.Ratio`` (its train script calls it after every env step of every
  copy) returns 1 on its first call and starts counting from that step, so its first step after the
  prefill trains once instead of ``train_ratio / replayed`` times: 15,993 updates where dreamer_tf makes
  16,000 at 8 per step. The tool leaves this as it is (7 updates early in the run, a quirk of the
  reference's counter that dreamer_tf does not copy); the report says both counts.
  """
  steps = total_steps(args) - prefill_steps(args)
  per_step = args.train_ratio / (args.batch_size * args.batch_length)
  if _current(args):
    # The reference's Ratio is called at every step from its first update on (that call returns 1, the
    # later ones per_step each); dreamer_tf makes none at its start step and per_step at every later one.
    return {OURS: int(steps * per_step), REFERENCE: 1 + int(steps * per_step)}
  ours = int(steps * per_step)
  reference, prev = 0, None
  for step in range(steps):  # embodied.when.Ratio.__call__, step by step.
    if prev is None:
      prev, repeats = step, 1
    else:
      repeats = int((step - prev) * per_step)
      prev += repeats / per_step
    reference += repeats
  return {OURS: ours, REFERENCE: reference}


def _has_model_key(name: str) -> bool:
  import yaml

  defaults = yaml.safe_load((REPO / "configs" / "defaults.yaml").read_text())
  return name in defaults.get("model", {})


# dreamer_tf writes a metrics row when this many seconds have passed, checked after every agent step: a row
# per agent step (train_ratio / (batch_size * batch_length) updates, 8 at the GoalLine settings), so that the
# early bins hold many rows, as the reference logs every update. With 1 s a row held 30-120 updates and
# smeared the first updates' falling KL over the next bins (docs/parity.md, the tool).
LOG_EVERY_AGENT_STEP = 1e-6


def ours_command(args: argparse.Namespace, seed: int, logdir: pathlib.Path) -> list[str]:
  """dreamer_tf's command line for one seed."""
  suite = _suite(args.task)
  if _current(args):
    return _ours_command_current(args, seed, logdir)
  overrides = {
    "model.deter": args.deter,
    "model.units": args.units,
    "model.layers": args.layers,
    "model.stoch": args.stoch,
    "model.classes": args.classes,
    "replay.batch_size": args.batch_size,
    "replay.batch_length": args.batch_length,
    "run.train_ratio": float(args.train_ratio),
    f"env.{suite}.repeat": args.repeat,
    # The reference's random prefill, rounded up to its 100-step chunks, as a window count.
    "run.train_start": prefill_windows(args),
    "run.log_every_secs": LOG_EVERY_AGENT_STEP,
    "run.video_every": 0,
  }
  if args.jit_compile:  # The reference's train step is always XLA-compiled (jax.jit).
    overrides["run.jit_compile"] = "true"
  if _has_model_key("vector_layers") and _has_model_key("vector_units"):
    overrides.update({"model.vector_layers": args.mlp_layers, "model.vector_units": args.mlp_units})
  elif (args.mlp_layers, args.mlp_units) != (args.layers, args.units):
    raise SystemExit(
      "error: this dreamer_tf ties the vector encoder/decoder to model.layers/units; pass "
      f"--mlp_layers={args.layers} --mlp_units={args.units} or update dreamer_tf (issue 12, point 2)"
    )
  return _main_command(args, seed, logdir, overrides)


def _main_command(args: argparse.Namespace, seed: int, logdir: pathlib.Path, overrides: dict, *configs: str):
  """``python -m dreamer_tf.main`` for one seed of the run: its task, steps, envs and ``--override``s."""
  return [
    _ours_python(),
    "-m",
    "dreamer_tf.main",
    *[f"--configs={c}" for c in configs],
    f"--env={args.task}",
    f"--logdir={logdir}",
    f"--seed={seed}",
    f"--steps={total_steps(args)}",
    f"--envs={args.envs}",
    "--eval_every=0",
    "--checkpoint_every_secs=1e9",
    *[f"--override={k}={v}" for k, v in {**overrides, **_pairs(args, "ours_override")}.items()],
  ]


def _pairs(args: argparse.Namespace, name: str) -> dict:
  """``--ours_override`` / ``--reference_flag`` as ``{key: value}`` (the last of a repeated key wins)."""
  return dict(item.split("=", 1) for item in getattr(args, name, None) or [])


def _ours_python() -> str:
  return str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable


def _ours_command_current(args: argparse.Namespace, seed: int, logdir: pathlib.Path) -> list[str]:
  """dreamer_tf's command line for one seed of ``--generation=current``: ``--configs=nature`` (replay
  context 1, online replay, no random prefill: its defaults) with the sizes, batch and ratio of the run."""
  suite = _suite(args.task)
  overrides = {
    "model.deter": args.deter,
    "model.units": args.units,
    "model.vector_units": args.units,  # The author's .*\.units sets its vector encoder and decoder too.
    "model.stoch": args.stoch,
    "model.classes": args.classes,
    "model.blocks": args.blocks,
    "model.cnn_depth": args.depth,
    "replay.batch_size": args.batch_size,
    "replay.batch_length": args.batch_length,
    "run.train_ratio": float(args.train_ratio),
    f"env.{suite}.repeat": args.repeat,
    "run.log_every_secs": LOG_EVERY_AGENT_STEP,
    "run.video_every": 0,
  }
  if args.jit_compile:
    overrides["run.jit_compile"] = "true"
  return _main_command(args, seed, logdir, overrides, "nature")


def _reference_command_current(args: argparse.Namespace, seed: int, logdir: pathlib.Path) -> list[str]:
  """The current code's command line for one seed: its ``dreamerv3/main.py`` with its ``defaults`` config
  and the author's own flags for the sizes, batch, ratio, envs and steps (through this tool's launcher)."""
  suite = _suite(args.task)
  if suite == "gym" and args.repeat != 1:
    raise SystemExit("error: the gymnasium adapter of tools/parity.py has no action repeat; pass --repeat=1")
  flags = {
    "--logdir": logdir,
    "--task": reference_task(args.task),
    "--seed": seed,
    "--run.steps": total_steps(args),
    "--run.train_ratio": float(args.train_ratio),
    "--run.envs": args.envs,
    "--batch_size": args.batch_size,
    "--batch_length": args.batch_length,
    # Its report stream samples windows of report_length + 1 from the same replay (default 32, longer
    # than a 16-step window); reports are off (report_every), only the stream's check needs this.
    "--report_length": args.batch_length,
    r"--.*\.rssm.deter": args.deter,
    r"--.*\.rssm.hidden": args.units,
    r"--.*\.rssm.stoch": args.stoch,
    r"--.*\.rssm.classes": args.classes,
    r"--.*\.rssm.blocks": args.blocks,
    r"--.*\.units": args.units,
    r"--.*\.depth": args.depth,
    "--jax.platform": "cpu",
    "--jax.compute_dtype": "float32",
    "--jax.prealloc": "False",
    "--run.log_every": 120,
    "--run.report_every": "1e9",
    "--run.save_every": "1e9",
    "--run.usage.nvsmi": "False",
  }
  if suite == "dmc":  # Proprioception only, as its dmc_proprio block (the env still renders every step).
    flags.update({"--env.dmc.repeat": args.repeat, "--env.dmc.image": "False"})
  flags.update({"--" + k.lstrip("-"): v for k, v in _pairs(args, "reference_flag").items()})
  command = [str(args.reference_venv / "bin" / "python"), str(LAUNCHER_CURRENT), f"--source={args.source}"]
  for key, value in flags.items():
    command += [key, str(value)]
  return command


def reference_command(args: argparse.Namespace, seed: int, logdir: pathlib.Path) -> list[str]:
  """The reference's command line for one seed, through this tool's launcher."""
  suite = _suite(args.task)
  if _current(args):
    return _reference_command_current(args, seed, logdir)
  if suite == "gym" and args.repeat != 1:
    raise SystemExit("error: the gymnasium adapter of tools/parity.py has no action repeat; pass --repeat=1")
  command = [
    str(args.reference_venv / "bin" / "python"),
    str(LAUNCHER),
    "--configs",
    "dmc_proprio",
    "--task",
    reference_task(args.task),
    "--logdir",
    str(logdir),
    "--seed",
    str(seed),
    "--run.steps",
    str(total_steps(args)),
    "--run.train_ratio",
    str(float(args.train_ratio)),
    "--batch_size",
    str(args.batch_size),
    "--batch_length",
    str(args.batch_length),
    "--envs.amount",
    str(args.envs),
    "--envs.parallel",
    "none",
    "--rssm.deter",
    str(args.deter),
    "--rssm.stoch",
    str(args.stoch),
    "--rssm.classes",
    str(args.classes),
    r"--.*\.units",
    str(args.units),
    r"--.*\.layers",
    str(args.layers),
  ]
  for part in ("encoder", "decoder"):
    command += [f"--{part}.mlp_layers", str(args.mlp_layers), f"--{part}.mlp_units", str(args.mlp_units)]
  if suite == "dmc":
    command += ["--env.dmc.repeat", str(args.repeat)]
  command += [
    "--jax.platform",
    "cpu",
    "--jax.precision",
    "float32",
    "--jax.prealloc",
    "False",
    "--jax.metrics_every",
    "1",
    "--run.log_every",
    "120",
    "--run.save_every",
    "-1" if getattr(args, "save_replay", False) else "1e9",
  ]
  for key, value in _pairs(args, "reference_flag").items():  # Its flags parser: the last of a key wins.
    command += ["--" + key.lstrip("-"), value]
  return command


def reference_missing(venv: pathlib.Path) -> str | None:
  """Why the reference cannot run (one line), or None."""
  if not (venv / "bin" / "python").exists():
    return f"no reference venv at {venv}: make it with `python tools/parity.py setup-reference --venv={venv}`"
  return None


# --- running -------------------------------------------------------------------------------------


def _run_env(threads: int, pythonpath: Sequence[pathlib.Path] = (), reference: bool = False) -> dict:
  """The environment of a run's process: ``threads`` CPU threads, the task's ``pythonpath``.

  dreamer_tf's side is limited by TensorFlow's thread pools (its XLA-compiled step runs on the intra-op
  pool). Only the reference side (JAX) gets ``XLA_FLAGS``: with ``--xla_cpu_multi_thread_eigen=false``
  TensorFlow 2.15's XLA rounds the last ``255 % 16`` output columns of a matmul differently from the
  others, and the symexp twohot heads' predictions part by up to about 1 (docs/parity.md section f).
  """
  env = _ref_env()
  if pythonpath:  # Both sides import the task's own module (gym_<module>:<id>) from there.
    env["PYTHONPATH"] = os.pathsep.join(str(pathlib.Path(p).resolve()) for p in pythonpath)
  env.update(
    OMP_NUM_THREADS=str(threads),
    TF_NUM_INTRAOP_THREADS=str(threads),
    TF_NUM_INTEROP_THREADS=str(threads),
  )
  env.pop("XLA_FLAGS", None)
  if reference:
    eigen = "true" if threads > 1 else "false"
    env["XLA_FLAGS"] = f"--xla_cpu_multi_thread_eigen={eigen} intra_op_parallelism_threads={threads}"
  return env


def run_dir(args: argparse.Namespace, side: str, seed: int) -> pathlib.Path:
  return args.runs / f"{side}_seed{seed}"


def run_all(args: argparse.Namespace) -> dict:
  """Trains every (side, seed) not yet finished, at most ``args.parallel`` processes at once."""
  out = args.out
  out.mkdir(parents=True, exist_ok=True)
  skipped = {}
  sides = [s for s in SIDES if args.sides in ("both", s)]
  if REFERENCE in sides:
    reason = args.current_missing if _current(args) else reference_missing(args.reference_venv)
    if reason:
      print(f"reference skipped: {reason}", flush=True)
      skipped[REFERENCE] = reason
      sides.remove(REFERENCE)
  jobs = []
  for seed in args.seeds:
    for side in sides:
      logdir = run_dir(args, side, seed)
      if (logdir / "exit_code").exists() and (logdir / "exit_code").read_text().strip() == "0":
        continue
      build = ours_command if side == OURS else reference_command
      jobs.append((side, seed, logdir, build(args, seed, logdir)))
  running = []
  envs = {side: _run_env(args.threads, args.pythonpath, reference=side == REFERENCE) for side in SIDES}
  while jobs or running:
    while jobs and len(running) < args.parallel:
      side, seed, logdir, cmd = jobs.pop(0)
      if logdir.exists() and side == REFERENCE:
        if _current(args) and (logdir / "ckpt").exists():  # Else the author's loop resumes its checkpoint.
          import shutil

          for name in ("ckpt", "replay"):
            shutil.rmtree(logdir / name, ignore_errors=True)
        for name in ("updates.jsonl", "episodes.jsonl"):
          (logdir / name).unlink(missing_ok=True)
      logdir.mkdir(parents=True, exist_ok=True)
      (logdir / "command.txt").write_text(shlex.join(cmd) + "\n")
      if side == OURS:
        (logdir / "source.json").write_text(json.dumps(_source_state()) + "\n")
      log = (logdir / "stdout.log").open("w")
      print(f"start {side} seed {seed}: {shlex.join(cmd)}", flush=True)
      proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=envs[side], cwd=REPO)
      running.append((side, seed, logdir, proc, log, time.time()))
    time.sleep(2)
    for item in list(running):
      side, seed, logdir, proc, log, start = item
      if proc.poll() is None:
        continue
      log.close()
      running.remove(item)
      (logdir / "exit_code").write_text(f"{proc.returncode}\n")
      (logdir / "wall_seconds").write_text(f"{time.time() - start:.1f}\n")
      status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}; see {logdir / 'stdout.log'})"
      print(f"{side} seed {seed} {status} in {time.time() - start:.0f}s", flush=True)
  return {"skipped": skipped}


def _source_state() -> dict:
  """The commit dreamer_tf ran from and the files that differed from it (a shared checkout)."""

  def git(*args):
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO).stdout.strip()

  modified = git("status", "--short", "--untracked-files=no").splitlines()
  return {"commit": git("rev-parse", "HEAD"), "modified": modified}


# --- reading the runs ----------------------------------------------------------------------------

# One table maps the reference's per-update metric names to dreamer_tf's (its train/* keys):
# (label, dreamer_tf key, reference key). DECODER sums the losses of the decoder's keys.
DECODER = "<decoder>"
METRICS = (
  ("model loss", "model_loss", "model_loss_mean"),
  ("image/vector loss", DECODER, DECODER),
  ("reward loss", "reward_loss", "reward_loss_mean"),
  ("continue loss", "cont_loss", "cont_loss_mean"),
  ("dynamics loss", "dyn_loss", "dyn_loss_mean"),
  ("representation loss", "rep_loss", "rep_loss_mean"),
  ("prior entropy", "prior_ent", "prior_ent_mean"),
  ("posterior entropy", "post_ent", "post_ent_mean"),
  ("actor entropy", "actor_entropy", "policy_entropy_mean"),
  ("return scale", "retnorm_scale", "retnorm_scale"),
  ("critic value", "critic_value", "extr_critic_mean"),
)
# The current generation (--generation=current): dreamer_tf's train/* keys of --configs=nature and the author's
# metric names (``dreamerv3/agent.py``); its loss/<k> are the per-term means before the loss scales. MODEL sums
# the author's world-model terms with its default scales (rep 0.1, the rest 1), as dreamer_tf's model_loss
# does; REPVAL is its loss/repval times its scale 0.3, as dreamer_tf's repval_loss; the critic value is the
# mean value over the imagined trajectories on both sides (the author's ``val``, dreamer_tf's imag_value).
MODEL, REPVAL = "<model>", "<repval>"
METRICS_CURRENT = (
  ("model loss", "model_loss", MODEL),
  ("image/vector loss", DECODER, DECODER),
  ("reward loss", "reward_loss", "loss/rew"),
  ("continue loss", "cont_loss", "loss/con"),
  ("dynamics loss", "dyn_loss", "loss/dyn"),
  ("representation loss", "rep_loss", "loss/rep"),
  ("prior entropy", "prior_ent", "dyn_ent"),
  ("posterior entropy", "post_ent", "rep_ent"),
  ("actor entropy", "actor_entropy", "ent/action"),
  ("return scale", "retnorm_scale", "retnorm_scale"),
  ("critic value", "imag_value", "val"),
  ("actor loss", "actor_loss", "loss/policy"),
  ("critic loss", "critic_loss", "loss/value"),
  ("replay value loss", "repval_loss", REPVAL),
)
_CURRENT_NOT_DECODER = {"rew", "con", "dyn", "rep", "policy", "value", "repval"}


def metrics_table(args: argparse.Namespace) -> tuple:
  return METRICS_CURRENT if _current(args) else METRICS


def _metric_current(row: dict, key: str) -> float | None:
  """One of the author's current metrics from a row of its launcher's ``updates.jsonl``."""
  decoder = [v for k, v in row.items() if k.startswith("loss/") and k[5:] not in _CURRENT_NOT_DECODER]
  if key == DECODER:
    return float(sum(decoder)) if decoder else None
  if key == MODEL:
    parts = [row.get(f"loss/{k}") for k in ("rew", "con", "dyn", "rep")]
    if None in parts or not decoder:
      return None
    return float(sum(decoder) + parts[0] + parts[1] + parts[2] + 0.1 * parts[3])
  if key == REPVAL:
    return 0.3 * float(row["loss/repval"]) if "loss/repval" in row else None
  value = row.get(key)
  return float(value) if isinstance(value, (int, float)) else None


_NOT_DECODER = {"model", "reward", "cont", "dyn", "rep", "actor", "critic", "repval"}
_OURS_LOSS = re.compile(r"^train/(.+)_loss$")
_REF_LOSS = re.compile(r"^(.+)_loss_mean$")
WARMUP_UPDATES = 10  # updates left out of seconds per update (tracing and XLA compilation)


def _metric(row: dict, key: str, pattern: re.Pattern, prefix: str) -> float | None:
  if key != DECODER:
    value = row.get(prefix + key)
    return float(value) if isinstance(value, (int, float)) else None
  parts = [v for k, v in row.items() if (m := pattern.match(k)) and m.group(1) not in _NOT_DECODER]
  return float(sum(parts)) if parts else None


def _read_jsonl(path: pathlib.Path) -> list[dict]:
  rows = []
  if path.exists():
    for line in path.read_text().splitlines():
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:
        continue  # The partial last line of a killed run.
  return rows


def load_ours(logdir: pathlib.Path, args: argparse.Namespace) -> dict:
  """dreamer_tf's episodes ``(agent_step, return)``, per-update metrics and seconds per update."""
  rows = _read_jsonl(logdir / "metrics.jsonl")
  episodes = [(r["step"] + args.envs, r["episode/return"]) for r in rows if "episode/return" in r]
  table = metrics_table(args)
  series = {label: [] for label, _, _ in table}
  replayed = args.batch_size * args.batch_length
  prev, secs, counted = 0, 0.0, 0
  for row in rows:
    if "train/updates" not in row or "train/model_loss" not in row:
      continue
    updates = int(row["train/updates"])
    if updates <= prev:
      continue
    # A row is the mean over the updates since the last one (about a second of them: 1 to 100+ at a
    # time; the first row, written after tracing and compiling, holds only a few). Each of its updates
    # gets the row's value, so that a bin's mean weighs every update once, as the reference's per-update
    # rows do; one point per row would weigh the first few updates' high KL like a hundred later ones.
    for label, key, _ in table:
      value = _metric(row, key, _OURS_LOSS, "train/")
      if value is not None:
        series[label].extend((float(x), value) for x in range(prev + 1, updates + 1))
    fps = row.get("fps/train", 0.0)
    if prev >= WARMUP_UPDATES and fps:
      secs += (updates - prev) * replayed / fps
      counted += updates - prev
    prev = updates
  return {
    "episodes": episodes,
    "series": series,
    "updates": prev,
    "seconds_per_update": secs / counted if counted else None,
  }


def load_reference(logdir: pathlib.Path, args: argparse.Namespace) -> dict:
  """The reference's episodes, per-update metrics, seconds per update and parameter counts."""
  if _current(args):
    return _load_reference_current(logdir)
  episodes = [(r["agent_step"], r["score"]) for r in _read_jsonl(logdir / "episodes.jsonl") if "score" in r]
  rows = _read_jsonl(logdir / "updates.jsonl")
  series = {label: [] for label, _, _ in METRICS}
  for row in rows:
    for label, _, key in METRICS:
      value = _metric(row, key, _REF_LOSS, "")
      if value is not None:
        series[label].append((float(row["update"]), value))
  params = {}
  if (logdir / "params.json").exists():
    names = {"model_opt": "world_model", "actor_opt": "actor", "critic_opt": "critic"}
    params = {names.get(k, k): v for k, v in json.loads((logdir / "params.json").read_text()).items()}
  return _reference_run(episodes, series, rows, params)


def _reference_run(episodes: list, series: dict, rows: list[dict], params: dict) -> dict:
  """A reference run's summary: its episodes and metric series, update count and seconds per update
  (the first ``WARMUP_UPDATES`` calls, which compile, left out)."""
  timed = [r["seconds"] for r in rows if r["update"] > WARMUP_UPDATES]
  return {
    "episodes": episodes,
    "series": series,
    "updates": int(rows[-1]["update"]) if rows else 0,
    "seconds_per_update": float(np.mean(timed)) if timed else None,
    "first_update_seconds": rows[0]["seconds"] if rows else None,
    "params": params,
  }


def _load_reference_current(logdir: pathlib.Path) -> dict:
  """The current code's run (``tools/parity_reference_current.py``): a row per ``Agent.train`` call, whose
  metrics are those of the previous update (``metrics_of``; the call is asynchronous)."""
  episodes = [(r["agent_step"], r["score"]) for r in _read_jsonl(logdir / "episodes.jsonl") if "score" in r]
  rows = _read_jsonl(logdir / "updates.jsonl")
  series = {label: [] for label, _, _ in METRICS_CURRENT}
  for row in rows:
    if "metrics_of" not in row:
      continue
    for label, _, key in METRICS_CURRENT:
      value = _metric_current(row, key)
      if value is not None:
        series[label].append((float(row["metrics_of"]), value))
  params = json.loads((logdir / "params.json").read_text()) if (logdir / "params.json").exists() else {}
  return _reference_run(episodes, series, rows, params)


def ours_params(args: argparse.Namespace) -> dict:
  """dreamer_tf's parameter counts for the run's settings (tools/count_params.py)."""
  cache = args.out / "params_dreamer_tf.json"
  if cache.exists():
    return json.loads(cache.read_text())
  command = ours_command(args, 0, args.out / "unused")
  overrides = [c for c in command if c.startswith("--override=model.")]
  cmd = [command[0], str(REPO / "tools" / "count_params.py"), f"--env={args.task}", *overrides]
  if _current(args):
    cmd.insert(3, "--configs=nature")
  out = subprocess.run(cmd, capture_output=True, text=True, env=_run_env(args.threads, args.pythonpath), cwd=REPO)
  if out.returncode:
    raise SystemExit(f"error: tools/count_params.py failed: {out.stderr.strip().splitlines()[-1:]}")
  counts = json.loads(out.stdout.strip().splitlines()[-1])
  cache.write_text(json.dumps(counts))
  return counts


# --- what collection wrote (replay-stats) -------------------------------------------------------


def replay_steps(side: str, logdir: pathlib.Path) -> dict | None:
  """The steps of a run's saved replay, the first environment's stream in order (None if none saved):
  ``reward``, ``is_first``, ``is_last``, ``is_terminal`` and ``action`` (discrete actions as indices,
  -1 where the reference stored a zero vector).

  dreamer_tf's is in its last checkpoint (``checkpoints/ckpt-*/replay``), the reference's in
  ``replay/`` as chunks of its saver (``run --save_replay`` saves after every collection round; a
  chunk saved again under the same id is read from its longest file)."""
  keys = ("reward", "is_first", "is_last", "is_terminal", "action")
  if side == OURS:
    checkpoints = sorted((logdir / "checkpoints").glob("ckpt-*/replay/manifest.json"))
    if not checkpoints:
      return None
    manifest = json.loads(checkpoints[-1].read_text())
    parts = []
    for chunk in sorted(manifest["chunks"], key=lambda c: c["index"]):
      with np.load(checkpoints[-1].parent / chunk["file"]) as data:
        parts.append({k: data[f"{k}|raw"][0, : chunk["length"]] for k in keys})
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}
  files = {}
  for path in (logdir / "replay").glob("*.npz"):
    stamp, uuid, _, length = path.stem.split("-")
    if int(length) > files.get(uuid, (None, -1, None))[1]:
      files[uuid] = (stamp, int(length), path)
  if not files:
    return None
  parts = []
  for _, length, path in sorted(files.values()):  # By creation time: one stream with one env.
    with np.load(path) as data:
      parts.append({k: data[k][:length] for k in keys})
  steps = {k: np.concatenate([p[k] for p in parts]) for k in keys}
  if steps["action"].ndim == 2 and set(np.unique(steps["action"])) <= {0.0, 1.0}:  # One-hot (discrete).
    steps["action"] = np.where(steps["action"].any(-1), steps["action"].argmax(-1), -1)
  return steps


def replay_stats(steps: dict, prefill: int) -> dict:
  """What collection wrote: episode boundaries, rewards at resets, and the actions of the random prefill
  and of the policy (the action stored at a last step is never executed; listed apart)."""
  first, last, action = steps["is_first"].astype(bool), steps["is_last"].astype(bool), steps["action"]
  out = {
    "steps": len(first),
    "first_step_is_first": bool(first[0]),
    "episodes_started": int(first.sum()),
    "is_last": int(last.sum()),
    "is_terminal": int(steps["is_terminal"].sum()),
    "terminal_only_on_last": bool((last | ~steps["is_terminal"].astype(bool)).all()),
    "every_last_followed_by_first": bool(first[1:][last[:-1]].all()),
    "reward_on_first_steps": sorted({round(float(r), 6) for r in steps["reward"][first]}),
  }
  discrete = np.issubdtype(action.dtype, np.integer)
  if discrete:
    out["action_on_last_steps"] = sorted({int(a) for a in action[last]})
    out["first_action_of_episodes"] = np.bincount(action[first][action[first] >= 0]).tolist()
  for phase, index in (("prefill", np.arange(len(first)) < prefill), ("policy", np.arange(len(first)) >= prefill)):
    executed = action[index & ~last]
    if not len(executed):
      continue
    if discrete:
      counts = np.bincount(executed[executed >= 0])
      out[f"{phase}_action_fractions"] = [round(c / counts.sum(), 4) for c in counts]
    else:
      executed = executed.reshape(len(executed), -1).astype(np.float64)
      out[f"{phase}_action_mean"] = _floats(executed.mean(0))
      out[f"{phase}_action_std"] = _floats(executed.std(0))
      out[f"{phase}_action_outside_unit_box"] = round(float((np.abs(executed) > 1).mean()), 4)
      out[f"{phase}_action_abs_max"] = round(float(np.abs(executed).max()), 4)
  if not discrete:
    out["policy_by_500_steps"] = _policy_windows(steps, prefill, 500)
  return out


def _policy_windows(steps: dict, prefill: int, size: int) -> list[dict]:
  """The continuous policy's executed actions (clipped to [-1, 1] as the environment sees them: the reference
  stores the raw sample) and the rewards, per ``size`` agent steps from the prefill on (the same steps on both
  sides, so the windows line up): does collection drift apart late in training?"""
  last, action = steps["is_last"].astype(bool), steps["action"]
  index = np.arange(len(last))
  windows = []
  for start in range(prefill, len(last), size):
    part = index[(index >= start) & (index < start + size) & ~last]
    if len(part) < size // 2:  # A short tail (the reference's last saved chunk) is left out.
      continue
    executed = np.clip(action[part].reshape(len(part), -1).astype(np.float64), -1.0, 1.0)
    windows.append(
      {
        "steps": [start, start + size],
        "action_mean": _floats(executed.mean(0)),
        "action_std": _floats(executed.std(0)),
        "action_abs_mean": round(float(np.abs(executed).mean()), 4),
        "action_at_bound": round(float((np.abs(executed) >= 1.0).mean()), 4),
        "action_step_change": round(float(np.abs(np.diff(executed, axis=0)).mean()), 4),
        # The reward an action earns is stored with the next step.
        "reward_mean": round(float(steps["reward"][np.minimum(part + 1, len(last) - 1)].mean()), 4),
      }
    )
  return windows


def replay_report(args: argparse.Namespace) -> dict:
  """``replay-stats``: :func:`replay_stats` of every run's saved replay into ``<out>/replay_stats.json``."""
  result = {}
  for side in SIDES:
    for seed in report_seeds(args):
      steps = replay_steps(side, run_dir(args, side, seed))
      if steps is not None:
        result.setdefault(side, {})[str(seed)] = replay_stats(steps, prefill_steps(args))
  if not result:
    raise SystemExit(f"error: no saved replay under {args.runs} (run with --save_replay)")
  args.out.mkdir(parents=True, exist_ok=True)
  (args.out / "replay_stats.json").write_text(json.dumps(result, separators=(",", ":")) + "\n")
  return result


# --- the environments themselves (env-check) ----------------------------------------------------

ENV_LAUNCHER = pathlib.Path(__file__).resolve().parent / "parity_reference_env.py"


def our_env_steps(task: str, seed: int, repeat: int, actions: np.ndarray) -> dict:
  """dreamer_tf's environment for ``task`` as a training run builds it (``envs.make_env`` with the
  ``env.dmc.repeat`` of the run, seed ``seed``), stepped with ``actions``: every step's observation keys,
  ``reward``, ``is_first``, ``is_last`` and ``is_terminal`` (the reset consumes one action, as on the
  reference's side)."""
  from dreamer_tf.envs import make_env
  from dreamer_tf.main import resolve_config

  config = resolve_config(task, [], [f"env.dmc.repeat={repeat}"])
  env = make_env(task, config, seed=seed)
  steps: dict[str, list] = {}

  def add(step):
    values = {k: v for k, v in step.observation.items() if not k.startswith("log_")}
    last = bool(step.is_last())
    values.update(
      reward=np.float32(step.reward),
      is_first=bool(step.is_first()),
      is_last=last,
      is_terminal=last and float(step.discount) == 0.0,
    )
    for key, value in values.items():
      steps.setdefault(key, []).append(np.asarray(value))

  add(env.reset())
  for action in actions:
    add(env.step(action))
  env.close()
  return {k: np.stack(v) for k, v in steps.items()}


def compare_env_steps(
  ours: dict, reference: dict, judged_steps: int = 50, rtol: float = 1e-4, atol: float = 1e-4
) -> dict:
  """Per key: whether the two sides agree, and the largest absolute difference over every step.

  The flags (``is_first``, ``is_last``, ``is_terminal``) must agree at every step. The float keys are judged
  over the first ``judged_steps`` steps of every episode (within ``atol + rtol * |reference|``): identical
  physics started from one state and driven by one action sequence still part by rounding (the author's
  ``NormalizeAction`` rescales the action in float32, about 1e-8 off the action as given), and a balancing
  pole amplifies that over an episode (to about 1e-3 by its 500th step), so later steps are reported, not
  judged. Keys only one side has are listed apart and fail the check."""
  out = {
    "keys_only_ours": sorted(set(ours) - set(reference)),
    "keys_only_reference": sorted(set(reference) - set(ours)),
  }
  first = np.asarray(ours["is_first"], bool)
  since_reset = np.arange(len(first)) - np.maximum.accumulate(np.where(first, np.arange(len(first)), 0))
  judged = since_reset < judged_steps
  per_key = {}
  for key in sorted(set(ours) & set(reference)):
    a, b = np.asarray(ours[key]), np.asarray(reference[key])
    if a.shape != b.shape:
      per_key[key] = {"agree": False, "shapes": [list(a.shape), list(b.shape)]}
      continue
    b64 = b.astype(np.float64).reshape(len(b), -1)
    diff = np.abs(a.astype(np.float64).reshape(len(a), -1) - b64)
    if a.dtype == bool or b.dtype == bool:
      bad = (diff != 0).any(1)
    else:
      bound = atol + rtol * np.abs(b64)
      bad = (diff > bound).any(1) & judged
    agree = not bad.any()
    per_key[key] = {
      "agree": bool(agree),
      "first_step_apart": None if agree else int(np.flatnonzero(bad)[0]),
      "max_abs_diff": float(diff.max()) if diff.size else 0.0,
      f"max_abs_diff_first_{judged_steps}_steps": float(diff[judged].max()) if diff.size else 0.0,
      "dtypes": [str(a.dtype), str(b.dtype)],
    }
  out["keys"] = per_key
  out["agree"] = (
    not out["keys_only_ours"] and not out["keys_only_reference"] and all(v["agree"] for v in per_key.values())
  )
  return out


def reference_side_missing(
  generation: str, venv: pathlib.Path, task: str, source: pathlib.Path | None = None
) -> tuple[str | None, pathlib.Path | None]:
  """``(why the reference side of ``task`` cannot run in ``venv``, or None; the current code's checkout)``."""
  if generation != "current":
    return reference_missing(venv), None
  reason, source = current_missing(venv, source)
  return reason or current_task_missing(venv, task), source


def env_check(args: argparse.Namespace) -> dict:
  """``env-check``: both sides' environments for a DMC task from the same seeds, stepped with the same
  uniformly random actions; writes ``<out>/env_check.json`` (per seed: episodes, returns, per-key agreement)."""
  if _suite(args.task) != "dmc":
    raise SystemExit(f"error: env-check compares DMC environments (dmcproprio_<domain>_<task>), not --task={args.task}")
  venv = args.reference_venv
  reason, source = reference_side_missing(args.generation, venv, args.task, args.source)
  if reason:
    raise SystemExit(f"error: {reason}")
  from dreamer_tf.envs import make_env
  from dreamer_tf.main import resolve_config

  probe = make_env(args.task, resolve_config(args.task, [], []), seed=0)
  shape = probe.action_spec().shape
  probe.close()
  args.out.mkdir(parents=True, exist_ok=True)
  result = {"task": args.task, "generation": args.generation, "repeat": args.repeat, "steps": args.steps, "seeds": {}}
  for seed in args.seeds:
    actions = np.random.default_rng(seed).uniform(-1, 1, (args.steps, *shape)).astype(np.float32)
    action_file, steps_file = args.out / f"actions_seed{seed}.npy", args.out / f"reference_seed{seed}.npz"
    np.save(action_file, actions)
    command = [str(venv / "bin" / "python"), str(ENV_LAUNCHER), f"--generation={args.generation}"]
    command += [f"--source={source}"] if source else []
    command += [f"--task={args.task[len('dmcproprio_') :]}", f"--seed={seed}", f"--repeat={args.repeat}"]
    command += [f"--actions={action_file}", f"--out={steps_file}"]
    done = subprocess.run(command, capture_output=True, text=True, env=_ref_env())
    if done.returncode:
      raise SystemExit(
        f"error: the reference's environment failed (exit {done.returncode}): {done.stderr.strip()[-400:]}"
      )
    with np.load(steps_file) as data:
      reference = {k: data[k] for k in data}
    ours = our_env_steps(args.task, seed, args.repeat, actions)
    compared = compare_env_steps(ours, reference, args.judged_steps)
    for side, steps in ((OURS, ours), (REFERENCE, reference)):
      ends = np.flatnonzero(steps["is_last"])
      returns = [float(steps["reward"][s : e + 1].sum()) for s, e in zip([0, *(ends[:-1] + 1)], ends)]
      compared[f"{side}_episode_returns"] = [round(r, 4) for r in returns]
      starts = [*np.flatnonzero(steps["is_first"]), len(steps["reward"])]  # Episodes, the unfinished last too.
      per_step = [float(steps["reward"][a + 1 : b].mean()) for a, b in zip(starts[:-1], starts[1:]) if b > a + 1]
      compared[f"{side}_reward_per_step"] = [round(r, 4) for r in per_step]
    result["seeds"][str(seed)] = compared
    steps_file.unlink()
    action_file.unlink()
  result["agree"] = all(v["agree"] for v in result["seeds"].values())
  (args.out / "env_check.json").write_text(json.dumps(result, indent=1) + "\n")
  return result


# --- pooling reports (pool) -----------------------------------------------------------------------


def pool_reports(results: Sequence[dict]) -> dict:
  """One table from the ``parity.json`` of runs made apart with the same settings and bins but other seeds.

  Per metric and side: the per-bin mean, min and max over all the reports' seeds, the fraction of bins where
  dreamer_tf's mean lies inside the reference's range (``inside``) and Welch's t per bin. Reports whose
  update bins differ cannot be pooled (one-line exit), nor can two reports that share a seed.
  """
  bins = results[0]["diagnostics"]["update_bins"]
  spacing = (bins[-1] - bins[0]) / max(1, len(bins) - 1) if len(bins) > 1 else 1.0
  seen: set = set()
  for result in results:
    # Alike to 1% of a bin: a run that made a few updates fewer (its bins end a little earlier) still pools.
    other = result["diagnostics"]["update_bins"]
    if len(other) != len(bins) or not np.allclose(other, bins, rtol=0, atol=0.01 * spacing):
      raise SystemExit("error: pool needs reports with the same update bins (the same --updates and --update_bins)")
    seeds = set(result["settings"]["seeds"])
    if seeds & seen:
      raise SystemExit(f"error: pool got seed(s) {sorted(seeds & seen)} twice; pool reports of different seeds")
    seen |= seeds
  pooled = {"update_bins": bins, "seeds": sorted(seen), "metrics": {}}
  pooled["update_bins_per_report"] = [r["diagnostics"]["update_bins"] for r in results]
  labels = [k for k in results[0]["diagnostics"] if k != "update_bins"]
  for label in labels:
    sides = {}
    for side in SIDES:
      per_seed = {}
      for result in results:
        for seed, curve in result["diagnostics"].get(label, {}).get(side, {}).get("seeds", {}).items():
          per_seed[seed] = np.array([np.nan if v is None else v for v in curve], np.float64)
      if per_seed:
        sides[side] = _band(per_seed)
    pooled["metrics"][label] = {**sides, "inside": _inside(sides, above_ok=False), "welch_t": _welch(sides)}
  return pooled


# --- the report ----------------------------------------------------------------------------------


def _plot_module():
  import importlib.util

  spec = importlib.util.spec_from_file_location("dreamer_tools_plot", pathlib.Path(__file__).parent / "plot.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _band(per_seed: dict[int, np.ndarray]) -> dict:
  curves = np.stack(list(per_seed.values()))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # All-nan bins.
    stats = {"mean": np.nanmean(curves, 0), "min": np.nanmin(curves, 0), "max": np.nanmax(curves, 0)}
  out = {k: _floats(v) for k, v in stats.items()}
  out["seeds"] = {str(seed): _floats(curve) for seed, curve in per_seed.items()}
  return out


def _floats(values) -> list:
  return [None if not np.isfinite(v) else float(f"{v:.6g}") for v in values]


def _episodes(data: dict) -> dict:
  return {
    side: {str(s): [[int(x), round(float(y), 3)] for x, y in run["episodes"]] for s, run in runs.items()}
    for side, runs in data.items()
  }


def _binned_sides(data: dict, points, edges: np.ndarray) -> dict:
  """Per side: ``{"mean", "min", "max", "seeds"}`` of the per-bin means of each seed's points."""
  plot = _plot_module()
  out = {}
  for side, runs in data.items():
    per_seed = {}
    for seed, run in runs.items():
      xy = np.asarray(points(run), np.float64).reshape(-1, 2)
      xy = xy[(xy[:, 0] >= edges[0]) & (xy[:, 0] <= edges[-1])]  # binned() would fold the rest into the end bins
      if len(xy):
        per_seed[seed] = plot.binned(xy[:, 0], xy[:, 1], edges)
    if per_seed:
      out[side] = _band(per_seed)
  return out


def _inside(sides: dict, above_ok: bool) -> float | None:
  """Fraction of bins where dreamer_tf's seed mean lies in the reference's seed range (or above it)."""
  if OURS not in sides or REFERENCE not in sides:
    return None
  hits, total = 0, 0
  for ours, low, high in zip(sides[OURS]["mean"], sides[REFERENCE]["min"], sides[REFERENCE]["max"]):
    if None in (ours, low, high):
      continue
    total += 1
    hits += low <= ours and (above_ok or ours <= high)
  return round(hits / total, 3) if total else None


_RUN_DIR = re.compile(rf"^({OURS}|{REFERENCE})_seed(\d+)$")


def report_seeds(args: argparse.Namespace) -> list[int]:
  """``args.seeds`` and every other seed with a run under ``args.runs`` made with the same settings
  (its ``command.txt`` is this tool's command for it), so that ``run --seeds=3`` into a folder of
  seeds 0-2 reports all four; runs of other settings are left out with a note."""
  seeds = set(args.seeds)
  for path in sorted(args.runs.iterdir()) if args.runs.is_dir() else ():
    match = _RUN_DIR.match(path.name)
    if not match or int(match.group(2)) in seeds or not (path / "command.txt").exists():
      continue
    side, seed = match.group(1), int(match.group(2))
    build = ours_command if side == OURS else reference_command
    # The interpreter may differ between sessions; the rest must be this tool's command for the seed.
    if shlex.split((path / "command.txt").read_text())[1:] == build(args, seed, path)[1:]:
      seeds.add(seed)
    else:
      print(f"note: {path} ran with other settings than these; left out of the report", flush=True)
  return sorted(seeds)


def _welch(sides: dict) -> list | None:
  """Per bin, Welch's t of dreamer_tf's seed mean minus the reference's (None with under 2 seeds a side)."""
  if OURS not in sides or REFERENCE not in sides:
    return None
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
  from parity_update import welch_t

  out = []
  for i in range(len(sides[OURS]["mean"])):
    a, b = ([v[i] for v in sides[side]["seeds"].values() if v[i] is not None] for side in SIDES)
    t = welch_t(a, b) if min(len(a), len(b)) > 1 else float("nan")
    out.append(round(t, 2) if np.isfinite(t) else None)
  return out


def report(args: argparse.Namespace, extra: dict | None = None) -> dict:
  """Reads the runs under ``args.runs`` and writes parity.json, returns.png and diagnostics.png.

  Every seed with a run of these settings under ``args.runs`` is reported, not only ``args.seeds``
  (:func:`report_seeds`)."""
  args.out.mkdir(parents=True, exist_ok=True)
  seeds = report_seeds(args)
  if seeds != sorted(args.seeds):
    print(f"report: seeds {','.join(map(str, seeds))} (the runs of these settings under {args.runs})", flush=True)
  data = {OURS: {}, REFERENCE: {}}
  for side, loader in ((OURS, load_ours), (REFERENCE, load_reference)):
    for seed in seeds:
      logdir = run_dir(args, side, seed)
      if logdir.exists():
        data[side][seed] = loader(logdir, args)
  data = {side: runs for side, runs in data.items() if runs}
  if not data:
    raise SystemExit(f"error: no runs under {args.runs}; run `python tools/parity.py run ...` first")

  steps = total_steps(args)
  step_edges = np.linspace(0, steps, args.return_bins + 1)
  returns = _binned_sides(data, lambda run: run["episodes"], step_edges)
  max_updates = min(run["updates"] for runs in data.values() for run in runs.values())
  update_edges = np.linspace(0, max(1, max_updates), args.update_bins + 1)
  # Finer bins over the first updates, where the KL falls fastest (hidden inside the first of 10 bins).
  early_edges = np.linspace(0, max(1, min(args.early_updates, max_updates)), args.early_bins + 1)
  diagnostics, early = {}, {}
  for label, _, _ in metrics_table(args):
    series = lambda run, label=label: run["series"][label]
    diagnostics[label] = _binned_sides(data, series, update_edges)
    early[label] = _binned_sides(data, series, early_edges)

  summary = {}
  for side, runs in data.items():
    timed = [run["seconds_per_update"] for run in runs.values() if run["seconds_per_update"]]
    summary[side] = {
      "seconds_per_update": round(float(np.mean(timed)), 3) if timed else None,
      "seconds_per_update_per_seed": {str(s): run["seconds_per_update"] for s, run in runs.items()},
      "updates_per_seed": {str(s): run["updates"] for s, run in runs.items()},
      "episodes_per_seed": {str(s): len(run["episodes"]) for s, run in runs.items()},
    }
  if OURS in data:
    summary[OURS]["params"] = ours_params(args)
  if REFERENCE in data:
    summary[REFERENCE]["params"] = next(iter(data[REFERENCE].values()))["params"]
    firsts = [r["first_update_seconds"] for r in data[REFERENCE].values() if r["first_update_seconds"]]
    summary[REFERENCE]["first_update_seconds"] = round(float(np.mean(firsts)), 1) if firsts else None

  settings = {
    k: getattr(args, k)
    for k in (
      "task",
      "updates",
      "deter",
      "units",
      "layers",
      "stoch",
      "classes",
      "mlp_layers",
      "mlp_units",
      "train_ratio",
      "batch_size",
      "batch_length",
      "envs",
      "repeat",
      "threads",
      "generation",
      "ours_override",
      "reference_flag",
    )
  }
  if _current(args):  # The author's layer counts on both sides (--configs=nature), not these flags.
    settings.update(layers=None, mlp_layers=None, mlp_units=None, blocks=args.blocks, depth=args.depth)
    settings["updates_note"] = (
      "both sides make their first update at the same agent step (replay holds batch_size * batch_length "
      "windows); there the reference trains once (its Ratio's first call returns 1) and dreamer_tf not at all, "
      "then both train_ratio / (batch_size * batch_length) times per agent step: the reference makes one update "
      "more (expected_updates)"
    )
  settings.update(
    seeds=seeds,
    steps=steps,
    prefill_steps=prefill_steps(args),
    expected_updates=expected_updates(args),
    reference_task=reference_task(args.task),
  )
  result = {
    "settings": settings,
    "sides": summary,
    "returns": {"agent_step_bins": _floats((step_edges[:-1] + step_edges[1:]) / 2), **returns},
    "returns_inside_reference_range_or_above": _inside(returns, above_ok=True),
    "episodes": _episodes(data),
    "diagnostics": {
      "update_bins": _floats((update_edges[:-1] + update_edges[1:]) / 2),
      **diagnostics,
    },
    "diagnostics_inside_reference_range": {
      label: _inside(sides, above_ok=False) for label, sides in diagnostics.items()
    },
    "diagnostics_early": {"update_bins": _floats((early_edges[:-1] + early_edges[1:]) / 2), **early},
    "diagnostics_early_inside_reference_range": {
      label: _inside(sides, above_ok=False) for label, sides in early.items()
    },
    "diagnostics_early_welch_t": {label: _welch(sides) for label, sides in early.items()},
    **(extra or {}),
  }
  result["commands"], result["dreamer_tf_source"] = {}, {}
  for side in data:
    for seed in data[side]:
      logdir = run_dir(args, side, seed)
      if (logdir / "command.txt").exists():
        result["commands"][logdir.name] = (logdir / "command.txt").read_text().strip()
      if (logdir / "source.json").exists():
        result["dreamer_tf_source"][logdir.name] = json.loads((logdir / "source.json").read_text())
  (args.out / "parity.json").write_text(json.dumps(result, separators=(",", ":")) + "\n")
  _draw(args, result)
  return result


_COLORS = {OURS: "tab:blue", REFERENCE: "tab:orange"}


def _label(result: dict, side: str) -> str:
  info = result["sides"].get(side, {})
  secs = info.get("seconds_per_update")
  seeds = len(info.get("updates_per_seed", {}))
  current = result["settings"].get("generation") == "current"
  reference = "reference (danijar/dreamerv3 e3f0224)" if current else "reference (dreamerv3 1.5.0)"
  name = "dreamer_tf" if side == OURS else reference
  return f"{name}, {seeds} seeds" + (f", {secs:.2f} s/update" if secs else "")


def _draw_band(ax, x, sides: dict, result: dict):
  for side, band in sides.items():
    mean = np.array([np.nan if v is None else v for v in band["mean"]])
    low = np.array([np.nan if v is None else v for v in band["min"]])
    high = np.array([np.nan if v is None else v for v in band["max"]])
    ax.fill_between(x, low, high, color=_COLORS[side], alpha=0.2, linewidth=0)
    ax.plot(x, mean, color=_COLORS[side], linewidth=1.6, label=_label(result, side))


def _draw(args: argparse.Namespace, result: dict) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  s = result["settings"]
  layers = (
    f"blocks {s['blocks']}, the author's layer counts"
    if s.get("generation") == "current"
    else f"layers {s['layers']}, vector mlp {s['mlp_layers']}x{s['mlp_units']}"
  )
  setting = (
    f"{s['task']}: deter {s['deter']}, units {s['units']}, latent {s['stoch']}x{s['classes']}, "
    f"{layers}, train ratio {s['train_ratio']:g}, batch {s['batch_size']}x"
    f"{s['batch_length']}, {s['envs']} envs, repeat {s['repeat']}"
  )
  fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
  returns = {k: v for k, v in result["returns"].items() if k in SIDES}
  _draw_band(ax, result["returns"]["agent_step_bins"], returns, result)
  prefill_label = "first update" if s.get("generation") == "current" else "end of the random prefill"
  ax.axvline(s["prefill_steps"], color="0.4", linestyle=":", linewidth=1.2, label=prefill_label)
  ax.set_xlabel("agent steps (every env step of every copy, first resets included)")
  ax.set_ylabel("episode return")
  ax.set_title(setting, fontsize=8)
  ax.grid(alpha=0.3)
  ax.legend(frameon=False, fontsize=8, loc="best")
  fig.tight_layout()
  fig.savefig(args.out / "returns.png")
  plt.close(fig)

  _draw_diagnostics(result, "diagnostics", setting, args.out / "diagnostics.png")
  _draw_diagnostics(result, "diagnostics_early", setting + ", first updates", args.out / "diagnostics_early.png")


def _draw_diagnostics(result: dict, key: str, setting: str, path: pathlib.Path) -> None:
  import matplotlib.pyplot as plt

  labels = [label for label in result[key] if label != "update_bins"]
  cols = 4
  fig, axes = plt.subplots(math.ceil(len(labels) / cols), cols, figsize=(16, 10), dpi=90)
  x = result[key]["update_bins"]
  for ax, label in zip(axes.flat, labels):
    _draw_band(ax, x, result[key][label], result)
    ax.set_title(label, fontsize=10)
    ax.set_xlabel("updates", fontsize=8)
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[len(labels) :]:
    ax.axis("off")
  handles, names = axes.flat[0].get_legend_handles_labels()
  fig.legend(handles, names, loc="lower right", frameon=False, fontsize=10)
  fig.suptitle(setting + "; bands: min-max over seeds", fontsize=10)
  fig.tight_layout(rect=(0, 0.03, 1, 0.97))
  fig.savefig(path)
  plt.close(fig)


# --- command line --------------------------------------------------------------------------------


GENERATIONS = ("2023", "current")
# check-update's defaults per --generation: the 2023 check's as before; the current code's defaults config
# with small sizes (its layer counts, bins and everything else its own; the RSSM's width is --units).
CHECK_DEFAULTS = {
  "2023": dict(updates=100, rtol=1e-4, deter=512, units=512, stoch=32, classes=32, batch_size=16, batch_length=64),
  "current": dict(updates=10, rtol=1e-2, deter=64, units=16, stoch=4, classes=4, batch_size=4, batch_length=16),
}


def _key_value(text: str) -> str:
  """An argparse type: ``KEY=VALUE`` with a non-empty key."""
  if "=" not in text or not text.split("=", 1)[0].strip("-"):
    raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
  return text


def _seeds(text: str) -> list[int]:
  try:
    seeds = [int(s) for s in text.split(",") if s.strip()]
  except ValueError:
    raise argparse.ArgumentTypeError(f"--seeds={text!r} is not a list of integers, e.g. 0,1,2") from None
  if not seeds:
    raise argparse.ArgumentTypeError("--seeds is empty; pass e.g. --seeds=0,1,2")
  return seeds


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  setup = sub.add_parser("setup-reference", help="make the reference's virtual environment")
  setup.add_argument(
    "--venv", type=pathlib.Path, default=None, help="default .venv-reference (2023), .venv-reference-current"
  )
  setup.add_argument("--python", default="python3.11", help="the Python 3.11 interpreter for the venv")
  setup.add_argument(
    "--generation", choices=GENERATIONS, default="2023", help="2023: dreamerv3 1.5.0; current: danijar/dreamerv3"
  )
  setup.add_argument("--source", type=pathlib.Path, default=None, help="current: a checkout of it at e3f0224")

  def model_and_batch(p, check=False):
    # The 2023 dmc_proprio settings (its `small` model; vector encoder/decoder 5 x 1024); check-update
    # leaves the sizes it shares with --generation=current unset here and fills them per generation
    # (CHECK_DEFAULTS).
    unset = lambda value: None if check else value
    p.add_argument("--deter", type=int, default=unset(512))
    p.add_argument("--units", type=int, default=unset(512))
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--stoch", type=int, default=unset(32), help="categorical latents")
    p.add_argument("--classes", type=int, default=unset(32), help="classes per latent")
    p.add_argument("--mlp_layers", type=int, default=5, help="vector encoder and decoder layers")
    p.add_argument("--mlp_units", type=int, default=1024, help="vector encoder and decoder units")
    p.add_argument("--batch_size", type=int, default=unset(16))
    p.add_argument("--batch_length", type=int, default=unset(64))
    p.add_argument("--out", type=pathlib.Path, required=True, help="output directory")
    p.add_argument(
      "--reference_venv",
      type=pathlib.Path,
      default=unset(DEFAULT_VENV),
      help="check-update --generation=current: default .venv-reference-current",
    )

  check = sub.add_parser("check-update", help="one world-model update, number for number (tools/parity_update.py)")
  check.add_argument("--task", required=True, help="gym_<id> with a 1-D Box observation")
  check.add_argument(
    "--generation",
    choices=GENERATIONS,
    default="2023",
    help="2023: against dreamerv3 1.5.0; current: the whole update against danijar/dreamerv3 e3f0224 "
    "(tools/parity_update_current.py; its own defaults below)",
  )
  check.add_argument(
    "--source", type=pathlib.Path, default=None, help="current: the checkout (default: the one setup-reference used)"
  )
  check.add_argument("--updates", type=int, default=None, help="updates on the fixed batch (2023: 100, current: 10)")
  check.add_argument(
    "--agree", type=int, default=None, help="fail if the sides part before this (2023: 20, current: all)"
  )
  check.add_argument("--rtol", type=float, default=None, help="largest relative difference counted as equal")
  check.add_argument("--atol", type=float, default=1e-6, help="plus this absolute difference (noise around 0)")
  check.add_argument(
    "--state_rtol", type=float, default=1e-2, help="current: relative tolerance of parameter changes and slots"
  )
  check.add_argument(
    "--state_atol", type=float, default=1e-3, help="current: plus this times the array's largest value (noise)"
  )
  check.add_argument(
    "--save_at", type=_seeds, default=None, help="current: updates after which the states are compared"
  )
  check.add_argument(
    "--state_agree", type=int, default=2, help="current: fail if a state differs after an update before this"
  )
  check.add_argument(
    "--mutate",
    default="",
    help="current: one dreamer_tf setting changed, KEY=VALUE (e.g. model.opt.beta2=0.99): the check's own test",
  )
  check.add_argument(
    "--context",
    type=int,
    choices=(0, 1),
    default=0,
    help="current: the replay context (both sides: windows of 1 + T steps from stored latents, the latents "
    "written back compared too)",
  )
  check.add_argument("--seed", type=int, default=0, help="the reference's initialisation and the batch")
  check.add_argument("--full", action="store_true", help="the whole agent update: world model, actor and critic")
  check.add_argument(
    "--own_init", action="store_true", help="each side initialises itself (--init_seeds), compared by seed means"
  )
  check.add_argument("--init_seeds", type=_seeds, default=list(range(1, 11)), help="with --own_init")
  check.add_argument(
    "--sampled",
    action="store_true",
    help="each side's own latent samplers (--sample_seeds) from the same parameters, compared by seed means",
  )
  check.add_argument("--sample_seeds", type=_seeds, default=list(range(1, 11)), help="with --sampled")
  check.add_argument("--jit_compile", action="store_true", help="compile dreamer_tf's update with XLA")
  check.add_argument(
    "--sample_offset",
    type=int,
    default=0,
    help="with --own_init --sampled: seed s initialises, seed s + this samples (0: the same seed)",
  )
  check.add_argument(
    "--shared_inits",
    action="store_true",
    help="with --sampled: both sides start from the reference's initialisation for each of --sample_seeds",
  )
  check.add_argument(
    "--mix_init",
    type=lambda text: [g for g in text.split(",") if g],
    default=[],
    help="with --sampled: as --shared_inits, but these groups (enc, gru, img_out, ..., "
    "tools/parity_update.py INIT_GROUPS) keep dreamer_tf's own draws for the seed",
  )
  check.add_argument(
    "--shuffle_init",
    action="store_true",
    help="with --own_init or --mix_init: dreamer_tf's own draws shuffled within each tensor",
  )
  check.add_argument(
    "--reference_cache",
    type=pathlib.Path,
    default=None,
    help="a folder: the reference's runs are stored there and reused by checks with the same settings",
  )
  check.add_argument(
    "--batches",
    type=int,
    default=1,
    help="a shared replay: this many different batches from one stream, update i on batch i mod N",
  )
  model_and_batch(check, check=True)
  envs = sub.add_parser("env-check", help="both sides' DMC environments from the same seeds and actions, step for step")
  envs.add_argument("--task", required=True, help="dmcproprio_<domain>_<task>")
  envs.add_argument("--generation", choices=GENERATIONS, default="2023")
  envs.add_argument("--source", type=pathlib.Path, default=None, help="current: the checkout")
  envs.add_argument("--reference_venv", type=pathlib.Path, default=None)
  envs.add_argument("--seeds", type=_seeds, default=[0, 1, 2])
  envs.add_argument("--steps", type=int, default=1200, help="actions per seed (episodes reset in between)")
  envs.add_argument("--repeat", type=int, default=2, help="action repeat on both sides")
  envs.add_argument(
    "--judged_steps", type=int, default=50, help="observations must agree over these first steps of each episode"
  )
  envs.add_argument("--out", type=pathlib.Path, required=True)
  pool = sub.add_parser("pool", help="one table from the parity.json of runs with the same settings, other seeds")
  pool.add_argument("reports", type=pathlib.Path, nargs="+", help="report folders (their parity.json) or files")
  pool.add_argument("--out", type=pathlib.Path, required=True, help="writes <out>/pooled.json")
  helps = {
    "run": "train both sides, then report",
    "report": "redraw the report",
    "replay-stats": "what collection wrote into each run's saved replay (runs made with --save_replay)",
  }
  for name, text in helps.items():
    p = sub.add_parser(name, help=text)
    p.add_argument("--task", required=True, help="dmcproprio_<domain>_<task> or gym_<id>")
    p.add_argument("--seeds", type=_seeds, default=[0, 1, 2])
    p.add_argument("--updates", type=int, required=True, help="updates after the prefill (sets the steps)")
    p.add_argument("--runs", type=pathlib.Path, default=None, help="the runs' logdirs (default: <out>/runs)")
    model_and_batch(p)
    p.add_argument("--train_ratio", type=float, default=512.0)
    p.add_argument("--envs", type=int, default=4)
    p.add_argument("--repeat", type=int, default=None, help="action repeat (default: 2 for DMC, 1 for gym)")
    p.add_argument("--sides", choices=("both", OURS, REFERENCE), default="both")
    p.add_argument("--parallel", type=int, default=2, help="training processes at once")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per training process")
    p.add_argument("--jit_compile", action="store_true", help="compile dreamer_tf's train step with XLA too")
    p.add_argument(
      "--pythonpath",
      type=pathlib.Path,
      action="append",
      default=[],
      help="a directory on both sides' PYTHONPATH, for a task's own module: tests/learning for "
      "gym_goal_line_env:GoalLine-v0",
    )
    p.add_argument(
      "--generation",
      choices=GENERATIONS,
      default="2023",
      help="2023: against dreamerv3 1.5.0; current: against danijar/dreamerv3 e3f0224 (its defaults config, "
      "dreamer_tf --configs=nature; --layers and --mlp_* are the 2023 sizes and are not used)",
    )
    p.add_argument(
      "--source", type=pathlib.Path, default=None, help="current: the checkout (default: the one setup-reference used)"
    )
    p.add_argument("--blocks", type=int, default=8, help="current: the RSSM's GRU blocks (divide --deter and --units)")
    p.add_argument("--depth", type=int, default=64, help="current: CNN depth (image tasks)")
    p.add_argument("--return_bins", type=int, default=10)
    p.add_argument("--update_bins", type=int, default=10)
    p.add_argument("--early_updates", type=int, default=200, help="finer bins over these first updates")
    p.add_argument("--early_bins", type=int, default=4, help="bins over the first --early_updates")
    p.add_argument(
      "--ours_override",
      action="append",
      type=_key_value,
      default=[],
      help="one more dreamer_tf --override KEY=VALUE (repeatable; after the tool's own): an ablation on our side",
    )
    p.add_argument(
      "--reference_flag",
      action="append",
      type=_key_value,
      default=[],
      help="one more of the reference's flags, KEY=VALUE without the dashes (repeatable; after the tool's own), "
      "e.g. replay_context=0",
    )
    p.add_argument(
      "--save_replay",
      action="store_true",
      help="the reference saves its replay after every collection round (for replay-stats; dreamer_tf's "
      "last checkpoint holds its own)",
    )
  args = parser.parse_args(argv)
  if args.command == "setup-reference":
    if args.venv is None:
      args.venv = DEFAULT_VENV_CURRENT if args.generation == "current" else DEFAULT_VENV
    if args.generation == "current" and args.source is None:
      parser.error("setup-reference --generation=current needs --source=CHECKOUT (danijar/dreamerv3 at e3f0224)")
    return args
  if args.command == "pool":
    return args
  if args.command == "env-check":
    if args.reference_venv is None:
      args.reference_venv = DEFAULT_VENV_CURRENT if args.generation == "current" else DEFAULT_VENV
    if args.steps < 1 or args.repeat < 1:
      parser.error(f"--steps={args.steps} and --repeat={args.repeat} must be at least 1")
    args.reference_venv, args.out = args.reference_venv.resolve(), args.out.resolve()
    return args
  check = args.command == "check-update"
  if check:
    current = args.generation == "current"
    defaults = CHECK_DEFAULTS["current" if current else "2023"]
    for name, value in defaults.items():
      if getattr(args, name) is None:
        setattr(args, name, value)
    if args.agree is None:
      args.agree = args.updates if current else 20
    if current and args.reference_venv is None:
      args.reference_venv = DEFAULT_VENV_CURRENT
    if not current and (args.source or args.save_at or args.mutate or args.context):
      parser.error("--source, --save_at, --mutate and --context go with --generation=current")
    if current and (args.own_init or args.sampled or args.batches != 1 or args.full):
      parser.error(
        "--generation=current checks the whole update (no --full needed); --own_init, --sampled "
        "and --batches are for the 2023 check"
      )
  if args.command == "replay-stats" and args.generation == "current":
    parser.error("replay-stats reads the 2023 reference's saved replay; --generation=current has no reader yet")
  if not check and args.generation == "current":
    if args.reference_venv == DEFAULT_VENV:
      args.reference_venv = DEFAULT_VENV_CURRENT
    if (args.layers, args.mlp_layers, args.mlp_units) != (2, 5, 1024):
      parser.error("--layers, --mlp_layers and --mlp_units are 2023 sizes; --generation=current keeps the author's")
    if args.deter % args.blocks or args.units % args.blocks:
      parser.error(f"--blocks={args.blocks} must divide --deter={args.deter} and --units={args.units}")
  if getattr(args, "reference_venv", "x") is None:
    args.reference_venv = DEFAULT_VENV
  if check and args.shared_inits and (args.own_init or not args.sampled):
    parser.error("--shared_inits goes with --sampled and without --own_init")
  if check and args.mix_init and (args.own_init or args.shared_inits or not args.sampled):
    parser.error("--mix_init goes with --sampled and without --own_init and --shared_inits")
  if check and args.shuffle_init and not (args.own_init or args.mix_init):
    parser.error("--shuffle_init goes with --own_init or --mix_init")
  if check and not args.task.startswith("gym_"):
    parser.error(f"--task={args.task}: check-update takes a gymnasium task, gym_<id> (e.g. gym_CartPole-v1)")
  sizes = ("updates", "deter", "units", "layers", "stoch", "classes", "mlp_layers", "mlp_units")
  for name in (*sizes, "batch_size", "batch_length", *(("agree", "batches") if check else ())):
    if getattr(args, name) < 1:
      parser.error(f"--{name}={getattr(args, name)} must be at least 1")
  args.reference_venv = args.reference_venv.resolve()
  args.out = args.out.resolve()
  if not check:
    if args.repeat is None:
      args.repeat = 2 if _suite(args.task) == "dmc" else 1
    if min(args.envs, args.parallel, args.threads, args.repeat, args.early_updates, args.early_bins) < 1:
      parser.error("--envs, --parallel, --threads, --repeat, --early_updates and --early_bins must be at least 1")
    if args.train_ratio <= 0:
      parser.error("--train_ratio must be positive")
    args.runs = (args.runs or args.out / "runs").resolve()
  return args


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  if args.command == "setup-reference":
    if args.generation == "current":
      setup_reference_current(args.venv.resolve(), args.source.resolve(), args.python)
    else:
      setup_reference(args.venv.resolve(), args.python)
    return 0
  check_modules(TOOL_MODULES.get(args.command, ()))
  if args.command == "check-update" and args.generation == "current":
    reason, args.source = current_missing(args.reference_venv, args.source)
    if reason:
      print(f"error: {reason}", file=sys.stderr)
      return 2
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    import parity_update_current

    return parity_update_current.check_update(args, args.reference_venv / "bin" / "python", _run_env(1, reference=True))
  if args.command == "check-update":
    reason = reference_missing(args.reference_venv)
    if reason:
      print(f"error: {reason}", file=sys.stderr)
      return 2
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    import parity_update

    return parity_update.check_update(args, args.reference_venv / "bin" / "python", _run_env(1, reference=True))
  if args.command == "pool":
    files = [r / "parity.json" if r.is_dir() else r for r in args.reports]
    pooled = pool_reports([json.loads(f.read_text()) for f in files])
    for label, row in pooled["metrics"].items():
      ts = [abs(t) for t in row["welch_t"] or [] if t is not None]
      print(f"{label}: inside {row['inside']}, largest |t| {max(ts) if ts else None}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pooled.json").write_text(json.dumps(pooled, separators=(",", ":")) + "\n")
    print(f"wrote {args.out / 'pooled.json'} ({len(pooled['seeds'])} seeds per side)")
    return 0
  if args.command == "env-check":
    result = env_check(args)
    for seed, compared in result["seeds"].items():
      worst = {k: f"{v.get('max_abs_diff', float('nan')):.2g}" for k, v in compared["keys"].items()}
      returns = [
        f"{a:.2f}/{b:.2f}"
        for a, b in zip(compared[f"{OURS}_episode_returns"], compared[f"{REFERENCE}_episode_returns"])
      ]
      print(
        f"seed {seed}: {'agree' if compared['agree'] else 'DIFFER'}; largest differences {worst}; returns {returns}"
      )
    print(f"wrote {args.out / 'env_check.json'}")
    return 0 if result["agree"] else 1
  if args.command == "replay-stats":
    for side, runs in replay_report(args).items():
      for seed, stats in runs.items():
        print(f"{side} seed {seed}: {json.dumps(stats)}")
    print(f"wrote {args.out / 'replay_stats.json'}")
    return 0
  if getattr(args, "generation", "2023") == "current" and args.command != "check-update":
    args.current_missing, source = current_missing(args.reference_venv, args.source)
    if args.current_missing is None and args.command == "run":
      args.current_missing = current_task_missing(args.reference_venv, args.task)
    args.source = source or args.source
  extra = run_all(args) if args.command == "run" else None
  result = report(args, extra)
  expected = result["settings"]["expected_updates"]
  for side, info in result["sides"].items():
    print(
      f"{side}: {info['seconds_per_update']} s/update, params {info.get('params')}, updates {info['updates_per_seed']}"
      f" (expected {expected[side]})"
    )
  early = result["diagnostics_early"]
  for label in ("dynamics loss", "posterior entropy"):
    for side in (s for s in SIDES if s in early[label]):
      cells = "  ".join(f"{x:g}: {m}" for x, m in zip(early["update_bins"], early[label][side]["mean"]))
      print(f"first updates, {label}, {side} seed means: {cells}")
    if result["diagnostics_early_welch_t"][label]:
      print(f"first updates, {label}, Welch's t: {result['diagnostics_early_welch_t'][label]}")
  for side, reason in result.get("skipped", {}).items():
    print(f"{side} skipped: {reason}")
  print(f"wrote {args.out / 'parity.json'}, returns.png, diagnostics.png and diagnostics_early.png there")
  return 0


if __name__ == "__main__":
  sys.exit(main())
