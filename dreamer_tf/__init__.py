"""dreamer_tf: DreamerV3 (Hafner et al., arXiv 2301.04104) in TensorFlow/Keras on TF-Agents.

Data flow, one module per stage:
  envs (TF-Agents PyEnvironments) -> collect (driver + observer) -> replay (sequence buffer)
  -> agent (world model, actor, critic updates) -> training (loop, checkpoints, logs) -> export.
"""

import sys

if not (3, 9) <= sys.version_info[:2] <= (3, 11):
  raise ImportError(
    f"dreamer_tf supports Python 3.9 to 3.11 only (this is {sys.version_info.major}."
    f"{sys.version_info.minor}): TensorFlow 2.15, TF-Agents 0.19 and Reverb 0.14 publish no "
    "wheels for Python 3.12+. Use a python3.11 virtual environment (see BUILD.md)."
  )

from dreamer_tf import _quiet

_quiet.apply()  # Before any entry point imports TensorFlow, gym or dm_control: see dreamer_tf/_quiet.py.

__version__ = "0.1.0"
