"""Installs dreamer_tf on the pinned TensorFlow 2.15 / TF-Agents 0.19 stack.

See BUILD.md for why the stack is pinned. Reproducible installs use the lock
file: ``pip install -c constraints.txt -e '.[test]'``.
"""

import sys

SUPPORTED = ((3, 9), (3, 11))
if not SUPPORTED[0] <= sys.version_info[:2] <= SUPPORTED[1]:
  sys.exit(
    f"dreamer_tf supports Python 3.9 to 3.11 only (this is Python {sys.version_info.major}."
    f"{sys.version_info.minor}): it is built on TensorFlow 2.15, TF-Agents 0.19 and Reverb 0.14, "
    "which publish no wheels for Python 3.12 or newer. Create the environment with python3.11."
  )

from setuptools import find_packages, setup  # noqa: E402

BSUITE = ["bsuite==0.3.6"]
# gym3 (from procgen-mirror) needs cffi<2 and glfw<2: constraints.txt pins cffi 1.17.1, cryptography
# 45.0.7 (google-auth needs >=38.0.3; 46.0.1 and later need cffi 2) and glfw 1.12.0. See BUILD.md.
PROCGEN = ["procgen-mirror==0.10.7"]
# tools/parity.py (the side-by-side with the 2023 code) draws its figures with matplotlib; the tool checks
# these imports at start-up and names this extra (docs/parity.md).
PARITY = ["matplotlib>=3.8"]

setup(
  name="dreamer_tf",
  version="0.1.0",
  description="DreamerV3 (arXiv 2301.04104) in TensorFlow/Keras on TF-Agents",
  long_description=open("README.md").read(),
  long_description_content_type="text/markdown",
  python_requires=">=3.9,<3.12",
  packages=find_packages(include=["dreamer_tf", "dreamer_tf.*"]),
  # dreamer_tf/configs links to the top-level configs/; the build copies the presets it points to into
  # the package, so a wheel or a non-editable install carries them (tests/test_wheel.py).
  package_data={"dreamer_tf": ["configs/*.yaml"]},
  install_requires=[
    "numpy==1.26.4",
    "tensorflow==2.15.1",
    "tensorflow-probability==0.23.0",
    "tf-agents[reverb]==0.19.0",
    "dm-reverb==0.14.0",
    "tensorflow-serving-api==2.15.1",
    "gymnasium==1.3.0",
    "ale-py==0.12.1",
    "dm-control==1.0.50",
    "mujoco==3.17.0",
    "crafter==1.8.3",
    "opencv-python-headless==4.11.0.86",
    "absl-py==2.5.1",
    "PyYAML>=6.0",
    "tqdm>=4.60",
    "psutil>=5.9",
  ],
  extras_require={
    "bsuite": BSUITE,
    "procgen": PROCGEN,
    "parity": PARITY,
    "test": ["pytest>=8", "ruff>=0.6", *BSUITE, *PROCGEN, *PARITY],
  },
  entry_points={"console_scripts": ["dreamer-tf=dreamer_tf.main:run"]},
)
