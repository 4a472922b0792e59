"""Bad input ends in one ``error: ...`` line (exit code 2, no traceback) and leaves the disk as it was.

Cases already covered by tests/test_main.py (unknown preset, unknown key, ill-typed
``model.deter``, a logdir of another ``--env``) and tests/test_config.py are not repeated.
"""

import json
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
from reliability_helpers import REPO, assert_one_line_error, error_line, main_env, run_main, tree_digest

from dreamer_tf.config import load_config
from dreamer_tf.training.checkpointer import Checkpointer
from dreamer_tf.training.run_dir import prepare_logdir

COMMON = ["--configs=debug", "--override=env.atari.length=400"]
QUICK = [*COMMON, "--steps=1"]  # Should a check be missing, the run ends at once instead of training.


def check_untouched(root: pathlib.Path, before: dict) -> None:
  assert tree_digest(root) == before


# Names and values.


def test_unknown_suite(tmp_path):
  result = run_main("--env=atri_pong", *QUICK, f"--logdir={tmp_path / 'run'}")
  assert_one_line_error(result, "unknown environment suite 'atri' in --env=atri_pong; did you mean 'atari_pong'?")
  check_untouched(tmp_path, {})


def test_unknown_task(tmp_path):
  result = run_main("--env=atari_pongg", *QUICK, f"--logdir={tmp_path / 'run'}")
  assert_one_line_error(result, "unknown Atari game 'pongg'; did you mean 'atari_pong'?")
  check_untouched(tmp_path, {})


def test_ill_typed_bool_override(tmp_path):
  result = run_main("--env=atari_pong", *QUICK, "--override=run.jit_compile=maybe", f"--logdir={tmp_path / 'run'}")
  assert_one_line_error(result, "run.jit_compile must be a bool like False, got 'maybe'")
  check_untouched(tmp_path, {})


def test_ill_typed_flag_is_absl_usage_error(tmp_path):
  # absl parses flags before main runs: its usage error exits with 1, still without a traceback.
  result = run_main("--env=atari_pong", "--steps=abc", f"--logdir={tmp_path / 'run'}")
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert "FATAL Flags parsing error: flag --steps=abc: could not convert string to float: 'abc'" in result.stderr
  check_untouched(tmp_path, {})


@pytest.mark.parametrize(
  "override, message",
  [
    ("env.atari.size=[-64,-64]", "env.atari.size must hold positive sizes, got [-64, -64]"),
    ("replay.capacity=-5", "replay.capacity must be positive, got -5"),
    ("run.envs=0", "run.envs must be positive, got 0"),
  ],
)
def test_impossible_values(tmp_path, override, message):
  result = run_main("--env=atari_pong", *QUICK, f"--override={override}", f"--logdir={tmp_path / 'run'}")
  assert_one_line_error(result, message)
  check_untouched(tmp_path, {})


def test_batch_not_divisible_by_replicas(tmp_path):
  result = run_main(
    "--env=atari_pong",
    *QUICK,
    "--strategy=mirrored",
    "--override=run.logical_cpus=2",  # 2 replicas on the CPU (docs/distributed.md).
    "--override=replay.batch_size=3",
    f"--logdir={tmp_path / 'run'}",
  )
  assert_one_line_error(result, "replay.batch_size=3 is not divisible by the 2 replicas")
  check_untouched(tmp_path, {})


# Logdirs.


def make_run_logdir(logdir: pathlib.Path, env_name="atari_pong", presets=("debug",), overrides=()):
  """A logdir as the trainer leaves it (config.yaml and run.json), without training."""
  return prepare_logdir(logdir, load_config(env_name, list(presets), list(overrides)), env_name)


@pytest.mark.parametrize(
  "args, section",
  [
    (["--configs=debug,s"], "model"),  # Another model size.
    (["--configs=debug", "--override=env.atari.size=[32,32]"], "env"),  # Another observation space.
    (["--configs=debug", "--override=env.atari.gray=true"], "env"),
    (["--configs=debug", "--override=replay.batch_length=8"], "replay.batch_length"),
  ],
)
def test_logdir_of_another_config_is_refused_untouched(tmp_path, args, section):
  logdir = make_run_logdir(tmp_path / "run")
  before = tree_digest(tmp_path)
  result = run_main("--env=atari_pong", *args, "--steps=1", f"--logdir={logdir}")
  assert_one_line_error(
    result,
    f"logdir {logdir} holds a run with a different {section} config; resume with the same "
    "--configs/--override or use another --logdir",
  )
  check_untouched(tmp_path, before)


@pytest.mark.parametrize("first, second", [("debug", "nature,debug"), ("nature,debug", "debug")])
def test_logdir_of_the_other_generation_is_refused_untouched(tmp_path, first, second):
  """A run records its generation (run.json, and the switches in config.yaml): resuming it with the
  other generation's --configs stops with the existing one-line error, before anything is written."""
  logdir = make_run_logdir(tmp_path / "run", presets=first.split(","))
  assert json.loads((logdir / "run.json").read_text())["generation"] == ("nature" if "nature" in first else "2023")
  before = tree_digest(tmp_path)
  result = run_main("--env=atari_pong", f"--configs={second}", "--steps=1", f"--logdir={logdir}")
  assert_one_line_error(
    result,
    f"logdir {logdir} holds a run with a different model config; resume with the same "
    "--configs/--override or use another --logdir",
  )
  check_untouched(tmp_path, before)


def test_logdir_under_a_regular_file_is_unwritable(tmp_path):
  # Root ignores permission bits, but nobody can create a directory inside a regular file.
  (tmp_path / "file.txt").write_text("not a directory")
  before = tree_digest(tmp_path)
  logdir = tmp_path / "file.txt" / "run"
  result = run_main("--env=atari_pong", *QUICK, f"--logdir={logdir}")
  assert_one_line_error(result, f"cannot write to logdir {logdir}: Not a directory; choose a writable --logdir")
  check_untouched(tmp_path, before)


@pytest.fixture
def read_only_dir(tmp_path):
  """A read-only tmpfs (refuses root's writes too); skipped where mounting is not permitted."""
  mount = tmp_path / "ro"
  mount.mkdir()
  result = subprocess.run(
    ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)], capture_output=True, text=True, timeout=30
  )
  if result.returncode != 0:
    pytest.skip(f"cannot mount a read-only tmpfs here: {result.stderr.strip()}")
  try:
    yield mount
  finally:
    subprocess.run(["umount", str(mount)], capture_output=True, timeout=30)


def test_logdir_on_a_read_only_filesystem(read_only_dir):
  logdir = read_only_dir / "run"
  result = run_main("--env=atari_pong", *QUICK, f"--logdir={logdir}")
  assert_one_line_error(result, f"cannot write to logdir {logdir}: Read-only file system; choose a writable --logdir")
  assert tree_digest(read_only_dir) == {}


# Optional dependencies.

BLOCK_BSUITE = textwrap.dedent(
  """
  import runpy, sys

  class BlockBsuite:
    def find_spec(self, name, path=None, target=None):
      if name == "bsuite" or name.startswith("bsuite."):
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
      return None

  sys.meta_path.insert(0, BlockBsuite())
  sys.argv = ["dreamer_tf.main", *sys.argv[1:]]
  runpy.run_module("dreamer_tf.main", run_name="__main__", alter_sys=True)
  """
)


def test_missing_optional_dependency(tmp_path):
  result = subprocess.run(
    [sys.executable, "-c", BLOCK_BSUITE, "--env=bsuite_catch/0", "--configs=debug", f"--logdir={tmp_path / 'run'}"],
    cwd=REPO,
    env=main_env(),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert_one_line_error(
    result,
    "bsuite_ environments needs the optional package 'bsuite', which is not installed: "
    "pip install -c constraints.txt -e '.[bsuite]'",
  )
  check_untouched(tmp_path, {})


# Checkpoints.


@pytest.fixture(scope="module")
def trained_logdir(tmp_path_factory):
  """A real run's logdir with two complete checkpoints: ckpt-40 and ckpt-60 (no updates yet)."""
  logdir = tmp_path_factory.mktemp("trained") / "run"
  for steps in (40, 60):
    result = run_main("--env=atari_pong", *COMMON, f"--steps={steps}", f"--logdir={logdir}")
    assert result.returncode == 0, result.stderr[-3000:]
  names = [p.name for p in sorted((logdir / "checkpoints").glob("ckpt-*"))]
  assert names == ["ckpt-000000000040", "ckpt-000000000060"]
  return logdir


@pytest.fixture
def logdir(trained_logdir, tmp_path):
  copy = tmp_path / "run"
  shutil.copytree(trained_logdir, copy)
  return copy


def ckpt(logdir, step):
  return logdir / "checkpoints" / f"ckpt-{step:012d}"


def truncate_model_data(path):
  data = next(path.glob("model.data-*"))
  size = data.stat().st_size
  with open(data, "r+b") as f:
    f.truncate(size // 2)
  return f"file {data.name} has {size // 2} bytes, expected {size}"


def garble_manifest(path):
  (path / "COMPLETE").write_text('{"version": 1, "step": ')
  return "unreadable COMPLETE manifest"


def flip_replay_byte(path):
  data = next((path / "replay").glob("*.npz"))
  raw = bytearray(data.read_bytes())
  raw[len(raw) // 2] ^= 0xFF
  data.write_bytes(bytes(raw))
  return f"file replay/{data.name} fails its sha256 checksum"


def delete_index(path):
  (path / "model.index").unlink()
  return "file model.index is missing"


@pytest.mark.slow
@pytest.mark.parametrize("damage", [truncate_model_data, garble_manifest, flip_replay_byte, delete_index])
def test_corrupt_newest_checkpoint_falls_back_to_previous(logdir, damage):
  reason = damage(ckpt(logdir, 60))
  result = run_main("--env=atari_pong", *COMMON, "--steps=50", f"--logdir={logdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  warning = rf"Checkpoint {re.escape(str(ckpt(logdir, 60)))} is corrupt \({re.escape(reason)}.*\); falling back to: "
  assert re.search(warning + "ckpt-000000000040\n", result.stderr), result.stderr[-3000:]
  assert f"Restored {ckpt(logdir, 40)} at step 40 (0 updates, replay 40 steps)" in result.stderr
  assert "done: 50 agent steps" in result.stdout
  Checkpointer(logdir / "checkpoints").verify(ckpt(logdir, 50))


@pytest.mark.slow
def test_corrupt_checkpoint_is_replaced_when_its_step_is_reached_again(logdir):
  truncate_model_data(ckpt(logdir, 60))
  result = run_main("--env=atari_pong", *COMMON, "--steps=60", f"--logdir={logdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"Restored {ckpt(logdir, 40)} at step 40" in result.stderr
  assert "done: 60 agent steps" in result.stdout
  Checkpointer(logdir / "checkpoints").verify(ckpt(logdir, 60))


@pytest.mark.slow
def test_all_checkpoints_corrupt_is_one_line_and_keeps_them(logdir):
  truncate_model_data(ckpt(logdir, 60))
  garble_manifest(ckpt(logdir, 40))
  before = tree_digest(logdir / "checkpoints")
  result = run_main("--env=atari_pong", *COMMON, "--steps=80", f"--logdir={logdir}")
  assert_one_line_error(
    result,
    f"All 2 checkpoints in {logdir / 'checkpoints'} are corrupt; move that directory away to start training "
    "from scratch",
  )
  assert tree_digest(logdir / "checkpoints") == before  # Nothing deleted: the user may still rescue them.


@pytest.mark.slow
def test_explicit_corrupt_checkpoint_is_one_line(logdir):
  reason = truncate_model_data(ckpt(logdir, 60))
  before = tree_digest(logdir / "checkpoints")
  result = run_main(
    "--env=atari_pong", *COMMON, "--eval_only", f"--checkpoint={ckpt(logdir, 60)}", f"--logdir={logdir}"
  )
  assert_one_line_error(
    result, f"Cannot restore checkpoint {ckpt(logdir, 60)}: {reason}; pass a valid ckpt-* directory"
  )
  assert tree_digest(logdir / "checkpoints") == before


# A full disk.


@pytest.fixture
def small_disk(tmp_path):
  """A 2.5 MB tmpfs: room for two debug checkpoints, not three; skipped where mounting is not permitted."""
  mount = tmp_path / "small"
  mount.mkdir()
  result = subprocess.run(
    ["mount", "-t", "tmpfs", "-o", "size=2560k", "tmpfs", str(mount)], capture_output=True, text=True, timeout=30
  )
  if result.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
  try:
    yield mount
  finally:
    subprocess.run(["umount", str(mount)], capture_output=True, timeout=30)


@pytest.mark.slow
def test_disk_full_keeps_the_last_complete_checkpoint(small_disk):
  logdir = small_disk / "run"
  result = run_main(
    "--env=atari_pong", *COMMON, "--override=run.checkpoint_every_secs=1", "--steps=100000", f"--logdir={logdir}"
  )
  assert result.returncode != 0, "training ran to the end on a full disk"
  directory = logdir / "checkpoints"
  complete = sorted(directory.glob("ckpt-*"))
  assert complete, result.stderr[-3000:]
  for path in complete:
    Checkpointer(directory).verify(path)
  assert not list(directory.glob("tmp-*")), "the failed save left its tmp-* directory"
  assert_one_line_error(result, "")
  assert "no space left on device" in error_line(result).lower()
