"""Test-session set-up shared by every test directory."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # Headless rendering; before anything imports dm_control.


def _load_gl_driver_first():
  """Renders one tiny MuJoCo frame before the test modules load TensorFlow, Reverb & co.

  Mesa's EGL driver needs static thread-local storage when it is loaded; with every test
  module's libraries already in the process there is none left and creating the first render
  context aborts the interpreter. Loading it first reserves it.
  """
  try:
    from dm_control import mujoco
  except ImportError:
    return
  mujoco.Physics.from_xml_string("<mujoco><worldbody><geom size='1'/></worldbody></mujoco>").render(8, 8)


_load_gl_driver_first()
