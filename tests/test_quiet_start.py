"""A quiet first run: no TensorFlow, gym or GLFW start-up noise; the originals with --verbose."""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from dreamer_tf import _quiet

REPO = pathlib.Path(__file__).resolve().parent.parent

# What a start printed before dreamer_tf/_quiet.py (TensorFlow 2.15, gym 0.23, dm_control 1.0.50).
TF_FACTORY = "Unable to register cuDNN factory"
GYM_BANNER = "Gym has been unmaintained since 2022"
GLFW_WARNING = "The DISPLAY environment variable is missing"
TF_CPP_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] ", re.MULTILINE)
# The variables that choose the output; a user's shell may hold any of them.
OUTPUT_VARIABLES = (
  "DISPLAY",
  "WAYLAND_DISPLAY",
  "MUJOCO_GL",
  "PYOPENGL_PLATFORM",
  "TF_CPP_MIN_LOG_LEVEL",
  _quiet.VERBOSE_ENV,
)


def clean_env(**extra):
  env = {k: v for k, v in os.environ.items() if k not in OUTPUT_VARIABLES}
  return dict(env, PYTHONUNBUFFERED="1", **extra)


def run_python(*args, env, timeout=600):
  result = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
  return result, result.stdout + result.stderr


def has_accelerator():
  import tensorflow as tf

  return bool(tf.config.list_physical_devices("GPU"))


@pytest.mark.slow
def test_debug_run_prints_no_library_noise_and_the_cpu_hint(tmp_path):
  result, output = run_python(
    "-m",
    "dreamer_tf.main",
    "--env=dmcproprio_cartpole_balance",  # Imports MuJoCo (dm_control): GLFW would warn without a display.
    "--configs=debug",
    "--steps=90",
    f"--logdir={tmp_path / 'run'}",
    env=clean_env(),
  )
  assert result.returncode == 0, output[-3000:]
  for noise in (TF_FACTORY, "Unable to register", GYM_BANNER, GLFW_WARNING, "GLFWError"):
    assert noise not in output, output
  assert not TF_CPP_LINE.search(output), output
  assert "MuJoCo renders headless with MUJOCO_GL=egl" in output or "MUJOCO_GL=osmesa" in output, output
  assert "done: 90 agent steps" in result.stdout
  hint = "No GPU or TPU found: one update of the debug model takes "
  if has_accelerator():
    assert hint not in output
  else:
    lines = [line for line in output.splitlines() if hint in line]
    assert len(lines) == 1, output
    assert re.search(
      r"takes [\d.e-]+s on this CPU; the \d+ updates left until run\.steps=90 would take about ", lines[0]
    )
    assert lines[0].endswith("debug is the smallest preset")


@pytest.mark.slow
def test_verbose_flag_keeps_the_original_output():
  # An unknown task stops the run right after start-up, once TensorFlow, gym and dm_control are loaded.
  args = ["-m", "dreamer_tf.main", "--env=dmcproprio_no_such_task", "--configs=debug"]
  verbose, verbose_output = run_python(*args, "--verbose", env=clean_env())
  assert verbose.returncode == 2, verbose_output[-3000:]
  assert "error: unknown DeepMind Control task 'no_such_task'" in verbose.stderr
  # GLFW's warning depends on the glfw version (1.12, the locked one, raises instead, and dm_control
  # moves on silently): the headless choice is checked through MUJOCO_GL below.
  for noise in (TF_FACTORY, GYM_BANNER):
    assert noise in verbose_output, verbose_output
  assert "MuJoCo renders headless" not in verbose_output
  quiet, quiet_output = run_python(*args, env=clean_env())
  assert quiet.returncode == 2, quiet_output[-3000:]
  for noise in (TF_FACTORY, GYM_BANNER, GLFW_WARNING):
    assert noise not in quiet_output, quiet_output


def environment_after_import(**env):
  keys = ["TF_CPP_MIN_LOG_LEVEL", "MUJOCO_GL"]
  code = f"import json, os, dreamer_tf; print(json.dumps({{k: os.environ.get(k) for k in {keys!r}}}))"
  result, output = run_python("-c", code, env=clean_env(**env), timeout=120)
  assert result.returncode == 0, output
  return json.loads(result.stdout.splitlines()[-1])


def test_defaults_are_set_only_when_unset_and_not_verbose():
  quiet = environment_after_import()
  assert quiet["TF_CPP_MIN_LOG_LEVEL"] == "2"
  assert quiet["MUJOCO_GL"] in ("egl", "osmesa")
  assert environment_after_import(DREAMER_TF_VERBOSE="1") == {"TF_CPP_MIN_LOG_LEVEL": None, "MUJOCO_GL": None}
  assert environment_after_import(TF_CPP_MIN_LOG_LEVEL="0", MUJOCO_GL="osmesa") == {
    "TF_CPP_MIN_LOG_LEVEL": "0",
    "MUJOCO_GL": "osmesa",
  }
  assert environment_after_import(DISPLAY=":0")["MUJOCO_GL"] is None  # With a display GLFW works.


def test_tensorflow_import_is_filtered_even_after_a_lookup():
  # A library may look for TensorFlow before anything imports it; the import itself is still filtered.
  code = "import importlib.util, dreamer_tf; importlib.util.find_spec('tensorflow'); import tensorflow"
  result, output = run_python("-c", code, env=clean_env(), timeout=300)
  assert result.returncode == 0, output
  assert "Unable to register" not in output, output
  verbose, verbose_output = run_python("-c", code, env=clean_env(DREAMER_TF_VERBOSE="1"), timeout=300)
  assert verbose.returncode == 0 and TF_FACTORY in verbose_output, verbose_output


def test_verbose_requested():
  assert _quiet.verbose_requested(["prog", "--verbose"], {})
  assert _quiet.verbose_requested(["prog", "--env=x", "--verbose=true"], {})
  assert _quiet.verbose_requested(["prog"], {"DREAMER_TF_VERBOSE": "1"})
  assert not _quiet.verbose_requested(["prog"], {"DREAMER_TF_VERBOSE": "0"})
  assert not _quiet.verbose_requested(["prog", "--noverbose", "--verbose=false"], {})
  assert not _quiet.verbose_requested(["--verbose"], {})  # argv[0] is the program.


@pytest.mark.parametrize(
  "environ, loadable, expected",
  [
    ({}, {"egl", "osmesa"}, "egl"),
    ({}, {"osmesa"}, "osmesa"),
    ({}, set(), ""),
    ({"MUJOCO_GL": "glfw"}, {"egl"}, None),
    ({"DISPLAY": ":1"}, {"egl"}, None),
    ({"WAYLAND_DISPLAY": "wayland-0"}, {"egl"}, None),
  ],
)
def test_choose_headless_gl(environ, loadable, expected, monkeypatch):
  monkeypatch.setattr(sys, "platform", "linux")
  assert _quiet.choose_headless_gl(environ, lambda backend: backend in loadable) == expected


def test_filtered_stderr_drops_only_the_factory_lines(capfd):
  factory = (
    b"2026-01-01 00:00:00.000000: E external/local_xla/xla/stream_executor/cuda/cuda_fft.cc:607] Unable to register "
    b"cuFFT factory: Attempting to register factory for plugin cuFFT when one has already been registered\n"
  )
  with pytest.raises(RuntimeError):
    with _quiet.filtered_stderr(_quiet.TF_FACTORY_NOISE):
      os.write(2, b"before\n" + factory + b"E real error: Unable to open file\n")
      raise RuntimeError("the import failed")
  os.write(2, b"after\n")
  assert capfd.readouterr().err == "before\nE real error: Unable to open file\nafter\n"


@pytest.mark.parametrize(
  ("env_name", "names_backend"),
  [
    ("atari_pong", False),  # An Atari run never loads MuJoCo: no line about its backend.
    ("gym_CartPole-v1", False),
    ("dmcproprio_cartpole_balance", True),
    ("gym_InvertedPendulum-v4", True),  # gymnasium's MuJoCo tasks too.
  ],
)
def test_the_mujoco_backend_is_named_once_only_when_a_mujoco_env_is_made(env_name, names_backend, monkeypatch, caplog):
  from dreamer_tf import envs
  from dreamer_tf.config import load_config

  monkeypatch.setattr(_quiet, "headless_gl", "egl")
  monkeypatch.setattr(_quiet, "_mujoco_backend_logged", False)
  config = load_config(env_name, ["debug"], has_image=env_name.startswith("atari"))
  with caplog.at_level("INFO", logger="dreamer_tf"):
    for _ in range(2):  # Two environments (or two copies of one): at most one line.
      envs.make_batched_env(env_name, config, 1).close()
  lines = [r.getMessage() for r in caplog.records if "MuJoCo" in r.getMessage()]
  assert lines == (
    ["MuJoCo renders headless with MUJOCO_GL=egl (no display set; set MUJOCO_GL to choose)"] if names_backend else []
  )
