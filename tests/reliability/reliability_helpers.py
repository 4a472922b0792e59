"""Shared helpers of the reliability tests: running ``dreamer_tf.main`` and fingerprinting a logdir."""

import hashlib
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]


def main_env(**extra) -> dict:
  env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
  env.update(extra)
  return env


def run_main(*args, timeout=300, env=None, python_args=()) -> subprocess.CompletedProcess:
  """Runs ``python [python_args] -m dreamer_tf.main args`` in the repository; returns the result."""
  return subprocess.run(
    [sys.executable, *python_args, "-m", "dreamer_tf.main", *map(str, args)],
    cwd=REPO,
    env=env or main_env(),
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def tree_digest(root: pathlib.Path) -> dict[str, str]:
  """``{relative path: sha256 or 'dir'}`` of everything under ``root`` (empty if it does not exist)."""
  root = pathlib.Path(root)
  if not root.exists():
    return {}
  digest = {}
  for path in sorted(root.rglob("*")):
    rel = path.relative_to(root).as_posix()
    digest[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
  return digest


def error_line(result: subprocess.CompletedProcess) -> str:
  """The ``error: ...`` line of a failed run's stderr (asserting there is exactly one)."""
  lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(lines) == 1, result.stderr[-3000:]
  return lines[0]


def assert_one_line_error(result: subprocess.CompletedProcess, message: str) -> None:
  """Exit code 2, no traceback, and an ``error: ...`` line containing ``message``."""
  assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  line = error_line(result)
  assert message in line, (message, line)
