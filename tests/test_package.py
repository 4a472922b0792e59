"""The package refuses unsupported Pythons with a message saying which ones work and why."""

import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
FAKE_312 = (
  "import collections, sys\n"
  "V = collections.namedtuple('V', 'major minor micro releaselevel serial')\n"
  "sys.version_info = V(3, 12, 0, 'final', 0)\n"
)


def run(code):
  return subprocess.run([sys.executable, "-c", FAKE_312 + code], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_import_on_python_312_names_the_supported_versions():
  result = run("import dreamer_tf")
  assert result.returncode != 0
  assert "dreamer_tf supports Python 3.9 to 3.11 only (this is 3.12)" in result.stderr
  assert "TensorFlow 2.15" in result.stderr


def test_setup_on_python_312_names_the_supported_versions():
  result = run("import runpy; sys.argv = ['setup.py', '--version']; runpy.run_path('setup.py', run_name='__main__')")
  assert result.returncode != 0
  assert "dreamer_tf supports Python 3.9 to 3.11 only (this is Python 3.12)" in result.stderr
  assert "Traceback" not in result.stderr
