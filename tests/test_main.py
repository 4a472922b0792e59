"""End-to-end tests of ``python -m dreamer_tf.main`` on a real Atari game."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from dreamer_tf.training.logger import read_metrics

REPO = pathlib.Path(__file__).resolve().parent.parent


def run_main(*args, timeout=600):
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  return subprocess.run(
    [sys.executable, "-m", "dreamer_tf.main", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
  )


@pytest.mark.slow
def test_train_checkpoint_and_resume_on_atari(tmp_path):
  logdir = tmp_path / "run"
  common = [
    "--env=atari_pong",
    "--configs=debug",
    f"--logdir={logdir}",
    "--override=env.atari.length=400",
    "--override=run.log_every_secs=1",
  ]
  first = run_main(*common, "--steps=200")
  assert first.returncode == 0, first.stderr[-3000:]
  assert "done: 200 agent steps" in first.stdout
  checkpoints = sorted((logdir / "checkpoints").glob("ckpt-*"))
  assert [c.name for c in checkpoints] == ["ckpt-000000000200"]
  assert (checkpoints[0] / "COMPLETE").exists() and (checkpoints[0] / "replay").is_dir()
  assert list(logdir.glob("events.out.tfevents.*"))
  assert (logdir / "config.yaml").exists()
  rows = read_metrics(logdir)
  assert all("step" in row for row in rows)
  episodes = [row for row in rows if "episode/return" in row]
  assert episodes and all(row["episode/length"] == 100 for row in episodes)  # 400 frames / repeat 4
  losses = [row["train/model_loss"] for row in rows if "train/model_loss" in row]
  assert losses
  updates_first = max(row["train/updates"] for row in rows if "train/updates" in row)
  # (200 - 79 random prefill steps: 4 x 16 windows of 16 steps, one env) * ratio 32 / (4 * 16)
  # replayed steps per update, rounded down.
  assert updates_first == 60

  second = run_main(*common, "--steps=300")
  assert second.returncode == 0, second.stderr[-3000:]
  assert "Restored" in second.stderr and "at step 200 (60 updates, replay 200 steps)" in second.stderr
  assert "done: 300 agent steps, 110 updates" in second.stdout
  rows = read_metrics(logdir)
  resumed = [row for row in rows if row["step"] > 200 and "train/model_loss" in row]
  assert resumed
  # The next losses are in line with the last ones (no restart from an untrained model).
  assert resumed[0]["train/model_loss"] < 1.5 * losses[-1]
  assert [c.name for c in sorted((logdir / "checkpoints").glob("ckpt-*"))] == ["ckpt-000000000200", "ckpt-000000000300"]

  evaluation = run_main(*common, "--eval_only", "--eval_episodes=1")
  assert evaluation.returncode == 0, evaluation.stderr[-3000:]
  assert "eval: 1 episodes" in evaluation.stdout
  assert any("eval/return" in row for row in read_metrics(logdir))


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
  logdir = tmp_path / "run"
  result = run_main(
    "--env=atari_pong",
    "--configs=debug",
    "--strategy=mirrored",
    "--override=run.logical_cpus=2",
    "--steps=120",
    f"--logdir={logdir}",
  )
  assert result.returncode == 0, result.stderr[-3000:]
  # (120 - 79 prefill) steps * ratio 32 / (4 * 16) = 20 updates of a global batch of 4 split over 2 replicas.
  assert "done: 120 agent steps, 20 updates" in result.stdout
  assert (logdir / "checkpoints" / "ckpt-000000000120" / "COMPLETE").exists()


@pytest.mark.parametrize(
  "args, message",
  [
    (["--env=atari_pong", "--configs=dbug"], "unknown preset 'dbug'; did you mean 'debug'?"),
    (["--env=atari_pong", "--override=model.detr=3"], "unknown config key 'model.detr'; did you mean 'model.deter'?"),
    (["--env=atari_pong", "--override=model.deter=abc"], "model.deter must be a int"),
  ],
)
def test_bad_input_is_one_line_without_traceback(tmp_path, args, message):
  result = run_main(*args, f"--logdir={tmp_path / 'run'}", timeout=120)
  assert result.returncode == 2
  assert "Traceback" not in result.stderr
  assert message in result.stderr
  assert not (tmp_path / "run").exists()


def test_logdir_of_another_env_is_refused_untouched(tmp_path):
  logdir = tmp_path / "run"
  logdir.mkdir()
  (logdir / "run.json").write_text(json.dumps({"env": "atari_breakout"}))
  before = {p.name: p.read_bytes() for p in logdir.iterdir()}
  result = run_main("--env=atari_pong", "--configs=debug", f"--logdir={logdir}", timeout=120)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert "holds a run of --env=atari_breakout" in result.stderr
  assert {p.name: p.read_bytes() for p in logdir.iterdir()} == before


def test_help_lists_every_flag():
  result = subprocess.run(
    [sys.executable, "-m", "dreamer_tf.main", "--helpshort"], cwd=REPO, capture_output=True, text=True, timeout=120
  )
  for flag in (
    "env",
    "configs",
    "override",
    "logdir",
    "steps",
    "seed",
    "envs",
    "precision",
    "[no]jit_compile",
    "checkpoint_every_secs",
    "eval_every",
    "eval_episodes",
    "[no]eval_only",
    "checkpoint",
    "strategy",
    "replay",
  ):
    assert f"--{flag}:" in result.stdout, flag
