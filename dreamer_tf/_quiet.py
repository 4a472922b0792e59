"""A quiet start: keeps the libraries' start-up noise out of the console, before they load.

Imported first by ``dreamer_tf/__init__.py``, so it runs before TensorFlow, TF-Agents, gym or
dm_control are imported by any entry point (``python -m dreamer_tf.main``, ``dreamer-tf``,
``python -m dreamer_tf.actor``, ``python -m dreamer_tf.export``). Unless the user asked for the
original output (``DREAMER_TF_VERBOSE=1``, or ``--verbose`` on the command line), it:

* sets ``TF_CPP_MIN_LOG_LEVEL=2`` when unset: TensorFlow's C++ INFO and WARNING lines are hidden,
  its ERROR lines are kept;
* drops the three ``Unable to register cuDNN/cuFFT/cuBLAS factory`` lines that TensorFlow 2.15
  prints at ERROR level while it is first imported (harmless: two copies of the CUDA plugins
  register themselves, also on machines without a GPU). Everything else TensorFlow writes to
  stderr during that import is passed through unchanged, and nothing is filtered afterwards;
* removes gym's "Gym has been unmaintained since 2022" banner (gym is imported by TF-Agents;
  dreamer_tf runs its environments on gymnasium), and only that notice;
* picks MuJoCo's headless OpenGL backend when no display is set and ``MUJOCO_GL`` is unset:
  EGL, or OSMesa when libEGL cannot be loaded. GLFW, dm_control's first choice, needs a
  display and otherwise warns ``The DISPLAY environment variable is missing``.

Variables the user set are never changed. See docs/troubleshooting.md ("Console output").
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile

VERBOSE_ENV = "DREAMER_TF_VERBOSE"

# TensorFlow 2.15 prints these at ERROR level while it is imported; see the module docstring.
TF_FACTORY_NOISE = re.compile(rb"Unable to register (cuDNN|cuFFT|cuBLAS) factory: Attempting to register factory")
GYM_BANNER = "Gym has been unmaintained since 2022"

# The backend chosen for MuJoCo, for log_mujoco_backend(): None when nothing was chosen (a display or a
# MUJOCO_GL of the user, or verbose), "" when no headless backend could be loaded.
headless_gl: str | None = None


def verbose_requested(argv: list[str], environ) -> bool:
  """True for ``DREAMER_TF_VERBOSE=1`` (or true/yes) or a ``--verbose`` command-line flag."""
  if environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes"):
    return True
  return any(arg in ("--verbose", "--verbose=true", "--verbose=True", "--verbose=1") for arg in argv[1:])


def choose_headless_gl(environ, can_load) -> str | None:
  """The MuJoCo backend to use without a display: "egl", "osmesa", "" (none loads) or None (leave as is).

  Args:
    environ: The process environment.
    can_load: ``can_load(backend) -> bool``, whether the backend's library loads.
  """
  if environ.get("MUJOCO_GL") or environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"):
    return None
  if not sys.platform.startswith("linux"):
    return None  # GLFW renders without an X display on macOS and Windows.
  for backend in ("egl", "osmesa"):
    if can_load(backend):
      return backend
  return ""


def _can_load(backend: str) -> bool:
  """Whether the shared library of ``backend`` ("egl" or "osmesa") loads in this process."""
  names = {"egl": ["libEGL.so.1", "libEGL.so"], "osmesa": ["libOSMesa.so.8", "libOSMesa.so.6", "libOSMesa.so"]}[backend]
  if any(_loads(name) for name in names):
    return True
  found = ctypes.util.find_library("EGL" if backend == "egl" else "OSMesa")  # Runs ldconfig: only as a last resort.
  return bool(found) and found not in names and _loads(found)


def _loads(name: str) -> bool:
  try:
    ctypes.CDLL(name)
  except OSError:
    return False
  return True


_mujoco_backend_logged = False


def log_mujoco_backend() -> None:
  """Logs the one line naming the MuJoCo backend picked by :func:`apply`; nothing if it picked none.

  Called when the first MuJoCo environment of the process is made (``envs.make_env``), and
  only then: a run of another suite never loads MuJoCo, so its backend is not worth a line.
  Logs at most once per process.
  """
  global _mujoco_backend_logged
  if _mujoco_backend_logged:
    return
  _mujoco_backend_logged = True
  log = logging.getLogger("dreamer_tf")
  if headless_gl:
    log.info("MuJoCo renders headless with MUJOCO_GL=%s (no display set; set MUJOCO_GL to choose)", headless_gl)
  elif headless_gl == "":
    log.warning(
      "no display, and neither EGL (libEGL) nor OSMesa (libOSMesa) loads: MuJoCo environments cannot render; "
      "install libegl1 (or libosmesa6), or set MUJOCO_GL"
    )


@contextlib.contextmanager
def filtered_stderr(pattern: re.Pattern):
  """Drops the lines matching ``pattern`` from what is written to file descriptor 2 inside the block.

  The output is held in a temporary file and written out, minus those lines, when the block ends
  (also on an exception). C and C++ libraries write to the descriptor directly, so redirecting
  ``sys.stderr`` alone would not catch them.
  """
  try:
    sys.stderr.flush()
    saved = os.dup(2)
  except (OSError, AttributeError, ValueError):  # No usable stderr (closed, or a GUI interpreter).
    yield
    return
  with tempfile.TemporaryFile() as held:
    os.dup2(held.fileno(), 2)
    try:
      yield
    finally:
      with contextlib.suppress(OSError, AttributeError, ValueError):
        sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      held.seek(0)
      kept = b"".join(line for line in held.read().splitlines(keepends=True) if not pattern.search(line))
      if kept:
        os.write(2, kept)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
  """Runs the first ``import tensorflow`` inside :func:`filtered_stderr`, then removes itself.

  It stays in place when a library only looks for TensorFlow (``importlib.util.find_spec``)
  without importing it.
  """

  def __init__(self):
    self._finding = False

  def find_spec(self, fullname, path, target=None):
    if fullname != "tensorflow" or self._finding:
      return None
    self._finding = True  # The other finders locate the package; this one only wraps its loader.
    try:
      spec = importlib.util.find_spec(fullname)
    finally:
      self._finding = False
    if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
      return spec
    exec_module = spec.loader.exec_module

    def exec_filtered(module):
      with contextlib.suppress(ValueError):
        sys.meta_path.remove(self)
      with filtered_stderr(TF_FACTORY_NOISE):
        exec_module(module)

    spec.loader.exec_module = exec_filtered
    return spec


def _drop_gym_banner() -> None:
  try:
    from gym_notices import notices
  except ImportError:
    return
  for version, text in list(notices.notices.items()):
    if text.startswith(GYM_BANNER):
      del notices.notices[version]


def apply() -> None:
  """Sets the quiet defaults; does nothing when verbose output was asked for."""
  global headless_gl
  if verbose_requested(sys.argv, os.environ):
    return
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  headless_gl = choose_headless_gl(os.environ, _can_load)
  if headless_gl:
    os.environ["MUJOCO_GL"] = headless_gl
  if "gym" not in sys.modules:
    _drop_gym_banner()
  if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _QuietTensorFlowImport())
