"""A wheel built from the repository installs into a fresh directory and trains from outside it."""

import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
# What `pip wheel .` reads: the build files and the package (whose configs/ links to the top level).
SOURCES = ["setup.py", "pyproject.toml", "README.md", "dreamer_tf", "configs"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  """The wheel, installed with ``pip install --target``; built from a copy so the checkout stays clean."""
  root = tmp_path_factory.mktemp("wheel")
  source = root / "source"
  source.mkdir()
  for name in SOURCES:
    path = REPO / name
    if path.is_dir():
      shutil.copytree(path, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    else:
      shutil.copy2(path, source / name)
  pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
  build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(source)]
  result = subprocess.run(build, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  (wheel,) = (root / "dist").glob("dreamer_tf-*.whl")
  target = root / "site"
  install = [*pip, "install", "--no-deps", "--target", str(target), str(wheel)]
  result = subprocess.run(install, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return wheel, target


def test_wheel_ships_the_presets(installed):
  wheel, target = installed
  names = zipfile.ZipFile(wheel).namelist()
  presets = sorted(p.name for p in (REPO / "configs").glob("*.yaml"))
  assert "defaults.yaml" in presets
  assert sorted(n.split("/")[-1] for n in names if n.startswith("dreamer_tf/configs/")) == presets
  shipped = target / "dreamer_tf" / "configs"
  assert not shipped.is_symlink()  # Real files, not a link back into the checkout.
  assert (shipped / "defaults.yaml").read_text() == (REPO / "configs" / "defaults.yaml").read_text()


@pytest.mark.slow
def test_console_script_trains_from_the_installed_copy(installed, tmp_path):
  _, target = installed
  # The installed copy comes first on the path, ahead of the editable install of the checkout.
  env = dict(os.environ, PYTHONPATH=str(target), PYTHONUNBUFFERED="1")
  where = "import dreamer_tf.config as c; print(c.__file__); print(c.CONFIG_DIR); print(c.available_presets())"
  result = subprocess.run([sys.executable, "-c", where], cwd=tmp_path, env=env, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-3000:]
  module, config_dir, presets = result.stdout.splitlines()
  assert pathlib.Path(module).is_relative_to(target)
  assert pathlib.Path(config_dir) == target / "dreamer_tf" / "configs"
  assert "debug" in presets

  script = target / "bin" / "dreamer-tf"
  args = ["--env=atari_pong", "--configs=debug", "--steps=100", f"--logdir={tmp_path / 'run'}"]
  result = subprocess.run([str(script), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "done: 100 agent steps" in result.stdout
  assert (tmp_path / "run" / "checkpoints" / "ckpt-000000000100" / "COMPLETE").exists()
