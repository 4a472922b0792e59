"""Image resizing shared by the suites (opencv, as in the 2023 paper's Atari wrapper)."""

from __future__ import annotations

import numpy as np

from dreamer_tf.errors import UserError

_METHODS = ("area", "bilinear")


def check_resize_method(method: str, key: str) -> None:
  """Raises UserError when ``method`` is not a known interpolation."""
  if method not in _METHODS:
    raise UserError(f"{key}={method!r} is not valid; use one of: {', '.join(_METHODS)}")


def resize_image(image: np.ndarray, size, method: str = "area") -> np.ndarray:
  """Resizes an ``HxWxC`` (or ``HxW``) uint8 image to ``size = (height, width)``.

  Args:
    image: The image; a 2-D image gets a channel axis of 1.
    size: Target ``(height, width)``.
    method: ``area`` (best for down-scaling) or ``bilinear``.

  Returns:
    A uint8 ``height x width x C`` array; the input itself when it already has that size.
  """
  if image.ndim == 2:
    image = image[:, :, None]
  height, width = int(size[0]), int(size[1])
  if image.shape[:2] == (height, width):
    return image
  import cv2  # opencv is heavy: imported on first use.

  interpolation = cv2.INTER_AREA if method == "area" else cv2.INTER_LINEAR
  resized = cv2.resize(image, (width, height), interpolation=interpolation)
  if resized.ndim == 2:  # opencv drops a channel axis of 1.
    resized = resized[:, :, None]
  return resized
