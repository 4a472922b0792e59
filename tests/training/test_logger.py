"""Tests for dreamer_tf.training.logger."""

import json
import math

import numpy as np
import pytest
import tensorflow as tf

from dreamer_tf.training.logger import Logger, _video_THWC, frame_grid, read_metrics


def _events(logdir):
  """Returns {tag: [(step, value_proto)]} from all event files under logdir."""
  found = {}
  for path in sorted(logdir.glob("events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        found.setdefault(value.tag, []).append((event.step, value))
  return found


def _lines(path):
  return path.read_text().splitlines()


def test_write_aggregates_means_and_resets(tmp_path):
  logger = Logger(tmp_path, step=10)
  logger.scalar("loss/model", 1.0)
  logger.scalar("loss/model", np.float32(3.0))
  logger.scalars({"loss/actor": tf.constant(0.5), "grad_norm": np.array(2)})
  assert logger.write() == {"loss/model": 2.0, "loss/actor": 0.5, "grad_norm": 2.0}
  logger.scalar("loss/model", 5.0)
  logger.write(step=20)
  assert logger.write(step=30) == {}  # Nothing recorded: no row.
  logger.close()
  rows = [json.loads(line) for line in _lines(tmp_path / "metrics.jsonl")]
  assert rows == [
    {"step": 10, "loss/model": 2.0, "loss/actor": 0.5, "grad_norm": 2.0},
    {"step": 20, "loss/model": 5.0},
  ]
  assert all(type(v) in (int, float) for row in rows for v in row.values())


def test_step_callable_and_episode_rows(tmp_path):
  counter = {"step": 100}
  with Logger(tmp_path, step_fn=lambda: counter["step"]) as logger:
    logger.scalar("a", 1.0)
    logger.episode(150, {"episode/return": np.float64(12.5), "length": np.int64(300)})
    logger.eval_episode(160, {"eval/return": 7.0, "eval/length": 10})
    counter["step"] = 200
    logger.write()
  rows = read_metrics(tmp_path)
  assert rows == [
    {"step": 150, "episode/return": 12.5, "episode/length": 300.0},
    {"step": 160, "eval/return": 7.0, "eval/length": 10.0},
    {"step": 200, "a": 1.0},
  ]


def test_non_finite_written_as_null(tmp_path):
  with Logger(tmp_path, step=1) as logger:
    logger.scalars({"nan": float("nan"), "inf": np.inf, "ok": 1.0})
    logger.write()
  line = _lines(tmp_path / "metrics.jsonl")[0]
  assert json.loads(line) == {"step": 1, "nan": None, "inf": None, "ok": 1.0}
  row = read_metrics(tmp_path / "metrics.jsonl")[0]
  assert math.isnan(row["nan"]) and math.isnan(row["inf"]) and row["ok"] == 1.0


def test_rejects_non_scalar_and_missing_step(tmp_path):
  logger = Logger(tmp_path)
  with pytest.raises(ValueError, match="'x' must be a scalar"):
    logger.scalar("x", np.zeros(3))
  with pytest.raises(ValueError, match="'y' must be a number"):
    logger.scalar("y", "hello")
  logger.scalar("z", 1.0)
  with pytest.raises(ValueError, match="needs a step"):
    logger.write()


def test_resume_appends_and_drops_partial_line(tmp_path):
  with Logger(tmp_path, step=1) as logger:
    logger.episode(1, {"episode/return": 1.0})
    logger.episode(2, {"episode/return": 2.0})
  # A kill -9 in the middle of a write leaves a partial last line.
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 3, "episode/ret')
  assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]
  with Logger(tmp_path) as logger:  # Resumed run.
    logger.episode(3, {"episode/return": 3.0})
  lines = _lines(tmp_path / "metrics.jsonl")
  assert len(lines) == 3 and all(json.loads(line) for line in lines)
  assert [r["episode/return"] for r in read_metrics(tmp_path)] == [1.0, 2.0, 3.0]


def test_read_metrics_skips_malformed_middle_line(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1, "a": 1}\nnot json\n{"step": 2, "a": 2}\n')
  assert [r["step"] for r in read_metrics(path)] == [1, 2]


def test_tensorboard_scalars_image_and_video(tmp_path):
  with Logger(tmp_path, step=5, video_fps=10) as logger:
    logger.scalar("loss/model", 1.0)
    logger.scalar("loss/model", 2.0)
    logger.image("obs", np.zeros((8, 8, 3), np.uint8))
    frames = np.random.default_rng(0).integers(0, 255, (6, 16, 12, 3), dtype=np.uint8)
    logger.video("policy", frames)
    logger.write()
    logger.episode(7, {"episode/return": 4.0})
  events = _events(tmp_path)
  ((step, value),) = events["loss/model"]
  assert step == 5 and tf.make_ndarray(value.tensor) == pytest.approx(1.5)
  ((step, value),) = events["episode/return"]
  assert step == 7 and tf.make_ndarray(value.tensor) == pytest.approx(4.0)
  assert "obs" in events
  ((step, value),) = events["policy"]
  assert step == 5
  assert value.image.encoded_image_string.startswith(b"GIF89a")
  assert (value.image.height, value.image.width, value.image.colorspace) == (16, 12, 3)
  # Videos never go to the JSONL file.
  assert set(read_metrics(tmp_path)[0]) == {"step", "loss/model"}


def test_video_layouts_and_grid():
  batch = np.zeros((2, 5, 4, 6, 3), np.float32)
  batch[1] = 1.0
  video = _video_THWC(batch)
  assert video.shape == (5, 4, 12, 3) and video.dtype == np.uint8
  assert video[:, :, :6].max() == 0 and video[:, :, 6:].min() == 255
  assert _video_THWC(np.zeros((3, 4, 4), np.uint8)).shape == (3, 4, 4, 1)
  grid = frame_grid(np.ones((20, 4, 6, 3), np.uint8), max_frames=9)
  assert grid.shape == (12, 18, 3)
