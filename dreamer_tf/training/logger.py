"""Metrics logging to TensorBoard and to a JSON-lines file.

Two kinds of records:

* Training metrics, recorded many times between writes with :meth:`Logger.scalar` /
  :meth:`Logger.scalars` and written as their mean by :meth:`Logger.write`.
* Episode events (:meth:`Logger.episode`, :meth:`Logger.eval_episode`), written at once as a
  row of their own.

Every JSON line has an integer ``step`` plus the metric names as keys; non-finite values are
written as ``null``. The file is only ever appended to, one flushed line per row, so a killed
run leaves at most a partial last line, which :func:`read_metrics` skips and which a resumed
:class:`Logger` removes before appending.

TensorFlow is imported on first use so that :func:`read_metrics` (used by ``tools/plot.py``)
works without paying for the TensorFlow import.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import pathlib
import threading
from collections.abc import Callable, Mapping
from typing import Any, Union

import numpy as np

METRICS_FILENAME = "metrics.jsonl"

StepSource = Union[int, Callable[[], int], None]

_log = logging.getLogger(__name__)


def _tf():
  import tensorflow as tf  # Deferred: see the module docstring.

  return tf


def to_float(name: str, value: Any) -> float:
  """Converts a Python, NumPy or eager TensorFlow scalar to a plain ``float``.

  Args:
    name: The metric name, for the error message.
    value: A scalar (any array-like with exactly one element).

  Returns:
    The value as a Python float (possibly ``nan`` or ``inf``).

  Raises:
    ValueError: If the value is not numeric or has more than one element.
  """
  if hasattr(value, "numpy"):
    value = value.numpy()
  try:
    array = np.asarray(value, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise ValueError(f"Metric {name!r} must be a number, got {type(value).__name__}: {value!r}") from e
  if array.size != 1:
    raise ValueError(f"Metric {name!r} must be a scalar, got an array of shape {array.shape}")
  return float(array.reshape(()))


def _json_row(step: int, values: Mapping[str, float]) -> str:
  row: dict[str, Any] = {"step": int(step)}
  for key, value in values.items():
    row[key] = value if math.isfinite(value) else None
  return json.dumps(row, allow_nan=False)


def _metrics_path(path: str | os.PathLike) -> pathlib.Path:
  path = pathlib.Path(path)
  return path / METRICS_FILENAME if path.is_dir() else path


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
  """Reads the rows of a ``metrics.jsonl`` file.

  A partial last line (left by a killed writer) is skipped silently; a malformed line
  elsewhere is skipped with a warning. ``null`` values are returned as ``nan``.

  Args:
    path: The JSONL file, or a run directory that contains ``metrics.jsonl``.

  Returns:
    One dict per row, in file order.

  Raises:
    FileNotFoundError: If the file does not exist.
  """
  path = _metrics_path(path)
  with open(path, "rb") as f:
    data = f.read()
  lines = data.split(b"\n")
  # A complete file ends with "\n", so the last element is empty; anything else is partial.
  complete, partial = lines[:-1], lines[-1]
  if partial.strip():
    _log.debug("Skipping the partial last line of %s", path)
  rows = []
  for number, line in enumerate(complete, start=1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
      _log.warning("Skipping malformed line %d of %s", number, path)
      continue
    if not isinstance(row, dict):
      _log.warning("Skipping line %d of %s: not a JSON object", number, path)
      continue
    rows.append({k: (float("nan") if v is None else v) for k, v in row.items()})
  return rows


def _drop_partial_last_line(path: pathlib.Path) -> None:
  """Truncates ``path`` after its last newline, so that appended rows start on a fresh line."""
  if not path.exists():
    return
  size = path.stat().st_size
  if size == 0:
    return
  block = 1 << 16
  with open(path, "rb+") as f:
    f.seek(size - 1)
    if f.read(1) == b"\n":
      return
    end = size
    keep = 0
    while end > 0:
      start = max(0, end - block)
      f.seek(start)
      newline = f.read(end - start).rfind(b"\n")
      if newline >= 0:
        keep = start + newline + 1
        break
      end = start
    f.truncate(keep)
  _log.warning("Removed a partial last line (%d bytes) from %s left by an interrupted run", size - keep, path)


def _video_THWC(frames: Any) -> np.ndarray:
  """Normalizes a video to uint8 ``[T, H, W, C]`` with C in {1, 3}.

  Accepts ``[T, H, W]``, ``[T, H, W, C]`` or ``[B, T, H, W, C]`` (batch tiled along the width),
  uint8 or float in [0, 1].
  """
  if hasattr(frames, "numpy"):
    frames = frames.numpy()
  frames = np.asarray(frames)
  if frames.ndim == 3:
    frames = frames[..., None]
  if frames.ndim == 5:
    B, T, H, W, C = frames.shape
    frames = frames.transpose(1, 2, 0, 3, 4).reshape(T, H, B * W, C)
  if frames.ndim != 4:
    raise ValueError(f"A video must be [T, H, W, C] or [B, T, H, W, C], got shape {frames.shape}")
  if frames.dtype != np.uint8:
    frames = (np.clip(frames.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
  channels = frames.shape[-1]
  if channels == 4:
    frames = frames[..., :3]
  elif channels not in (1, 3):
    raise ValueError(f"A video needs 1, 3 or 4 channels, got shape {frames.shape}")
  return frames


def encode_gif(frames_THWC: np.ndarray, fps: float) -> bytes:
  """Encodes uint8 ``[T, H, W, C]`` frames (C in {1, 3}) as a looping animated GIF.

  Raises:
    ImportError: If Pillow is not installed.
  """
  from PIL import Image

  if frames_THWC.shape[-1] == 1:
    images = [Image.fromarray(frame[..., 0], mode="L") for frame in frames_THWC]
  else:
    images = [Image.fromarray(frame, mode="RGB") for frame in frames_THWC]
  # GIF delays are in units of 10 ms; browsers slow down anything under 20 ms.
  duration = max(20, int(round(1000.0 / max(fps, 1e-3))))
  buffer = io.BytesIO()
  images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)
  return buffer.getvalue()


def frame_grid(frames_THWC: np.ndarray, max_frames: int = 16) -> np.ndarray:
  """Tiles up to ``max_frames`` evenly spaced frames into one ``[H', W', C]`` image."""
  T, H, W, C = frames_THWC.shape
  count = min(T, max_frames)
  frames = frames_THWC[np.linspace(0, T - 1, count).round().astype(int)]
  cols = int(math.ceil(math.sqrt(count)))
  rows = int(math.ceil(count / cols))
  grid = np.zeros((rows * H, cols * W, C), np.uint8)
  for i, frame in enumerate(frames):
    r, c = divmod(i, cols)
    grid[r * H : (r + 1) * H, c * W : (c + 1) * W] = frame
  return grid


class Logger:
  """Aggregates metrics and writes them to TensorBoard and ``<logdir>/metrics.jsonl``.

  Example::

    logger = Logger(logdir, step=lambda: int(agent.train_step_counter))
    logger.scalars({"loss/model": 1.2, "loss/actor": 0.3})
    logger.write()  # Means since the last write, at the current step.
    logger.episode(step, {"episode/return": 12.0, "episode/length": 300})

  Thread-safe: episodes may be logged from a collection thread.
  """

  def __init__(
    self,
    logdir: str | os.PathLike,
    step: StepSource = None,
    *,
    step_fn: Callable[[], int] | None = None,
    tensorboard: bool = True,
    jsonl: bool = True,
    video_fps: float = 20.0,
  ):
    """Creates a logger; files are opened on the first write.

    Args:
      logdir: Directory for the TensorBoard event files and ``metrics.jsonl`` (created).
      step: The step used when a write passes none: an int, or a callable returning the
        current step (e.g. reading the agent's step counter).
      step_fn: Same as a callable ``step``; give one or the other.
      tensorboard: Whether to write TensorBoard summaries.
      jsonl: Whether to append rows to ``metrics.jsonl``.
      video_fps: Frame rate of the animated GIFs written by :meth:`video`.
    """
    if step is not None and step_fn is not None:
      raise ValueError("Logger takes either step or step_fn, not both")
    self._logdir = pathlib.Path(logdir)
    self._step = step_fn if step_fn is not None else step
    self._use_tensorboard = tensorboard
    self._use_jsonl = jsonl
    self._video_fps = video_fps
    self._lock = threading.Lock()
    self._sums: dict[str, float] = {}
    self._counts: dict[str, int] = {}
    self._images: dict[str, np.ndarray] = {}
    self._videos: dict[str, np.ndarray] = {}
    self._writer = None
    self._jsonl_file = None
    self._logdir.mkdir(parents=True, exist_ok=True)

  @property
  def logdir(self) -> pathlib.Path:
    return self._logdir

  @property
  def metrics_path(self) -> pathlib.Path:
    return self._logdir / METRICS_FILENAME

  @property
  def step(self) -> int:
    """The current default step (from the callable or the explicit value)."""
    return self._resolve_step(None)

  @step.setter
  def step(self, value: StepSource) -> None:
    self._step = value

  def scalar(self, name: str, value: Any) -> None:
    """Records one value of a metric; :meth:`write` writes the mean of the recorded values."""
    value = to_float(name, value)
    with self._lock:
      self._sums[name] = self._sums.get(name, 0.0) + value
      self._counts[name] = self._counts.get(name, 0) + 1

  def scalars(self, values: Mapping[str, Any], prefix: str | None = None) -> None:
    """Records several metrics at once, optionally as ``<prefix>/<name>``."""
    for name, value in values.items():
      self.scalar(f"{prefix}/{name}" if prefix else name, value)

  def image(self, name: str, image_HWC: Any) -> None:
    """Records an image (uint8, or float in [0, 1]); the last one is written by :meth:`write`."""
    image = _video_THWC(np.asarray(image_HWC)[None])[0]
    with self._lock:
      self._images[name] = image

  def video(self, name: str, frames_THWC: Any) -> None:
    """Records a video for TensorBoard (an animated GIF); the last one is written by :meth:`write`.

    Args:
      name: The summary tag.
      frames_THWC: uint8 (or float in [0, 1]) frames, ``[T, H, W, C]`` or ``[B, T, H, W, C]``
        (batch entries side by side). Videos are not written to ``metrics.jsonl``.
    """
    frames = _video_THWC(frames_THWC)
    with self._lock:
      self._videos[name] = frames

  def write(self, step: int | None = None) -> dict[str, float]:
    """Writes the means of the scalars recorded since the last write, and pending media.

    Args:
      step: The step to write at; defaults to the logger's step source.

    Returns:
      The written means by name (empty when nothing was recorded).
    """
    step = self._resolve_step(step)
    with self._lock:
      means = {name: self._sums[name] / self._counts[name] for name in self._sums}
      images, videos = self._images, self._videos
      self._sums, self._counts, self._images, self._videos = {}, {}, {}, {}
      if means:
        self._append_row(step, means)
      if self._use_tensorboard and (means or images or videos):
        self._write_tensorboard(step, means, images, videos)
    return means

  def episode(self, step: int, metrics: Mapping[str, Any]) -> None:
    """Writes one training episode's statistics as a row of its own, immediately.

    Args:
      step: The agent step at which the episode ended.
      metrics: e.g. ``{"episode/return": 12.0, "episode/length": 300}``; names without a
        ``/`` are prefixed with ``episode/``.
    """
    self._write_event(step, metrics, "episode")

  def eval_episode(self, step: int, metrics: Mapping[str, Any]) -> None:
    """Writes one evaluation episode's statistics as a row of its own, immediately.

    Args:
      step: The agent step of the policy being evaluated.
      metrics: e.g. ``{"eval/return": 12.0, "eval/length": 300}``; names without a ``/`` are
        prefixed with ``eval/``.
    """
    self._write_event(step, metrics, "eval")

  def flush(self) -> None:
    with self._lock:
      if self._jsonl_file is not None:
        self._jsonl_file.flush()
      if self._writer is not None:
        self._writer.flush()

  def close(self) -> None:
    """Flushes and closes the files; a later write reopens them (appending)."""
    with self._lock:
      if self._jsonl_file is not None:
        self._jsonl_file.close()
        self._jsonl_file = None
      if self._writer is not None:
        self._writer.close()
        self._writer = None

  def __enter__(self) -> Logger:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def _resolve_step(self, step: int | None) -> int:
    if step is None:
      step = self._step() if callable(self._step) else self._step
    if step is None:
      raise ValueError("Logger.write() needs a step: pass one or give the Logger a step source")
    return int(to_float("step", step))

  def _write_event(self, step: int, metrics: Mapping[str, Any], prefix: str) -> None:
    step = self._resolve_step(step)
    values = {(name if "/" in name else f"{prefix}/{name}"): to_float(name, v) for name, v in metrics.items()}
    if not values:
      return
    with self._lock:
      self._append_row(step, values)
      if self._use_tensorboard:
        self._write_tensorboard(step, values, {}, {})

  def _append_row(self, step: int, values: Mapping[str, float]) -> None:
    """Appends one flushed line; call with the lock held."""
    if not self._use_jsonl:
      return
    if self._jsonl_file is None:
      _drop_partial_last_line(self.metrics_path)
      self._jsonl_file = open(self.metrics_path, "a", encoding="utf-8")  # Kept open; closed by close().
    self._jsonl_file.write(_json_row(step, values) + "\n")
    self._jsonl_file.flush()

  def _write_tensorboard(self, step, scalars, images, videos) -> None:
    """Writes summaries and flushes; call with the lock held."""
    tf = _tf()
    if self._writer is None:
      self._writer = tf.summary.create_file_writer(str(self._logdir))
    with self._writer.as_default():
      for name, value in scalars.items():
        tf.summary.scalar(name, value, step=step)
      for name, image in images.items():
        tf.summary.image(name, image[None], step=step)
      for name, frames in videos.items():
        self._write_video(tf, name, frames, step)
    self._writer.flush()

  def _write_video(self, tf, name: str, frames: np.ndarray, step: int) -> None:
    try:
      gif = encode_gif(frames, self._video_fps)
    except ImportError:
      _log.debug("Pillow is not installed: writing video %r as a grid of frames", name)
      tf.summary.image(name, frame_grid(frames)[None], step=step)
      return
    T, H, W, C = frames.shape
    summary = tf.compat.v1.Summary()
    summary.value.add(
      tag=name,
      image=tf.compat.v1.Summary.Image(height=H, width=W, colorspace=C, encoded_image_string=gif),
    )
    tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=step)
