"""Tests for dreamer_tf.training.checkpointer."""

import gc
import json
import logging
import os
import signal
import time

import numpy as np
import pytest
import tensorflow as tf

from dreamer_tf.errors import UserError
from dreamer_tf.training.checkpointer import MARKER, Checkpointer, SignalHandler, checkpoint_step


def _write_payload(value):
  def save(dirpath):
    np.save(os.path.join(dirpath, "data.npy"), np.full(1000, value, np.float32))

  return save


def _read_payload(into):
  def load(dirpath):
    into["value"] = float(np.load(os.path.join(dirpath, "data.npy"))[0])

  return load


def _variables():
  return tf.Variable(np.zeros(4, np.float32)), tf.Variable(0, dtype=tf.int64)


def test_round_trip_with_payload(tmp_path):
  weights, step = _variables()
  saver = Checkpointer(tmp_path, weights=weights, step=step)
  weights.assign([1.0, 2.0, 3.0, 4.0])
  step.assign(100)
  path = saver.save(100, extra_save_fns={"replay": _write_payload(7.0)})
  assert path.name == "ckpt-000000000100" and checkpoint_step(path) == 100
  manifest = json.loads((path / MARKER).read_text())
  assert manifest["step"] == 100 and "replay/data.npy" in manifest["files"]
  assert all(set(entry) == {"size", "sha256"} for entry in manifest["files"].values())
  assert not list(tmp_path.glob("tmp-*"))

  weights2, step2 = _variables()
  loaded = {}
  restorer = Checkpointer(tmp_path, weights=weights2, step=step2)
  assert restorer.latest() == path
  assert restorer.restore(extra_restore_fns={"replay": _read_payload(loaded)}) == path
  np.testing.assert_array_equal(weights2.numpy(), [1, 2, 3, 4])
  assert int(step2.numpy()) == 100 and loaded["value"] == 7.0


def test_restore_without_checkpoints_returns_none(tmp_path):
  weights, _ = _variables()
  saver = Checkpointer(tmp_path / "missing", weights=weights)
  assert saver.latest() is None and saver.restore() is None


def test_keep_deletes_older_and_existing_step_is_not_modified(tmp_path):
  weights, _ = _variables()
  saver = Checkpointer(tmp_path, keep=2, weights=weights)
  for step in (10, 20, 30):
    weights.assign_add(tf.ones(4))
    saver.save(step)
  assert [p.name for p in saver.checkpoints()] == ["ckpt-000000000020", "ckpt-000000000030"]
  marker = (tmp_path / "ckpt-000000000030" / MARKER).read_text()
  weights.assign_add(tf.ones(4))
  saver.save(30)  # Same step again: the complete checkpoint stays as it is.
  assert (tmp_path / "ckpt-000000000030" / MARKER).read_text() == marker
  saver.restore()
  np.testing.assert_array_equal(weights.numpy(), [3, 3, 3, 3])


def test_crash_leftovers_and_truncated_newest_fall_back(tmp_path, caplog):
  weights, _ = _variables()
  saver = Checkpointer(tmp_path, keep=3, weights=weights)
  weights.assign([1, 1, 1, 1])
  saver.save(10, extra_save_fns={"replay": _write_payload(1.0)})
  weights.assign([2, 2, 2, 2])
  newest = saver.save(20, extra_save_fns={"replay": _write_payload(2.0)})
  # A save killed halfway (no marker, never renamed) and a dead process's id.
  leftover = tmp_path / "tmp-30-999999999"
  leftover.mkdir()
  (leftover / "model.index").write_bytes(b"partial")
  # The newest checkpoint's payload got truncated on disk.
  data = newest / "replay" / "data.npy"
  data.write_bytes(data.read_bytes()[:100])

  assert saver.latest() == tmp_path / "ckpt-000000000010"
  assert not leftover.exists()
  weights.assign([0, 0, 0, 0])
  loaded = {}
  with caplog.at_level(logging.WARNING):
    restored = saver.restore(extra_restore_fns={"replay": _read_payload(loaded)})
  assert restored == tmp_path / "ckpt-000000000010"
  np.testing.assert_array_equal(weights.numpy(), [1, 1, 1, 1])
  assert loaded["value"] == 1.0
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert any(str(newest) in w and "replay/data.npy" in w and "falling back" in w for w in warnings)


def test_checksum_mismatch_same_size_is_detected(tmp_path, caplog):
  weights, _ = _variables()
  saver = Checkpointer(tmp_path, weights=weights)
  weights.assign([5, 5, 5, 5])
  saver.save(1)
  weights.assign([6, 6, 6, 6])
  newest = saver.save(2)
  data_file = next(newest.glob("model.data-*"))
  blob = bytearray(data_file.read_bytes())
  blob[-1] ^= 0xFF  # Same size, different content.
  data_file.write_bytes(bytes(blob))
  with caplog.at_level(logging.WARNING):
    assert saver.restore() == tmp_path / "ckpt-000000000001"
  assert "sha256" in caplog.text
  np.testing.assert_array_equal(weights.numpy(), [5, 5, 5, 5])


def test_explicit_missing_or_corrupt_checkpoint_raises_user_error(tmp_path):
  weights, _ = _variables()
  saver = Checkpointer(tmp_path, weights=weights)
  with pytest.raises(UserError, match="ckpt-000000000042.*no such directory"):
    saver.restore(tmp_path / "ckpt-000000000042")
  path = saver.save(5)
  (path / MARKER).write_text("{not json")
  with pytest.raises(UserError, match="unreadable COMPLETE manifest") as info:
    saver.restore(path)
  assert "\n" not in str(info.value)
  # Every checkpoint corrupt: refuse to silently start from scratch.
  with pytest.raises(UserError, match="All 1 checkpoints"):
    saver.restore()


def test_mismatched_model_raises_user_error(tmp_path):
  weights, _ = _variables()
  Checkpointer(tmp_path, weights=weights).save(1)
  other = Checkpointer(tmp_path, other=tf.Variable(1.0))
  with pytest.raises(UserError, match="does not match the model"):
    other.restore()


class _Records(logging.Handler):
  def __init__(self):
    super().__init__()
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


def test_a_saved_value_of_another_shape_raises_the_same_user_error_and_nothing_else(tmp_path):
  """A variable of the same name but another shape (another model size or generation) is refused in one
  line, without TensorFlow's later warnings about the values the interrupted restore left unused."""
  weights, _ = _variables()
  path = Checkpointer(tmp_path, weights=weights, extra=tf.Variable(np.ones(3, np.float32))).save(1)
  wider = tf.Variable(np.zeros(6, np.float32), name="wider")
  records = _Records()
  logging.getLogger("tensorflow").addHandler(records)
  try:
    for restore in (lambda c: c.restore(), lambda c: c.restore(path)):
      with pytest.raises(UserError) as info:
        restore(Checkpointer(tmp_path, weights=wider))
      assert str(info.value) == (
        f"Checkpoint {path} does not match the model (the saved value of wider:0 has shape (4,), the model's "
        "variable (6,)): it was written with a different configuration; use a new logdir or the same configuration"
      )
      gc.collect()  # TensorFlow logs the unused values when the restore's coordinator is deleted.
  finally:
    logging.getLogger("tensorflow").removeHandler(records)
  assert records.messages == []
  np.testing.assert_array_equal(wider.numpy(), np.zeros(6, np.float32))


def test_save_under_distribution_strategy_scope(tmp_path):
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  with strategy.scope():
    weights = tf.Variable([1.0, 2.0])
    saver = Checkpointer(tmp_path, weights=weights)
    saver.save(3)
    weights.assign([0.0, 0.0])
    assert saver.restore() is not None
  np.testing.assert_array_equal(weights.numpy(), [1.0, 2.0])


def _wait_for(predicate, timeout=2.0):
  deadline = time.monotonic() + timeout
  while not predicate() and time.monotonic() < deadline:
    time.sleep(0.01)
  return predicate()


def test_signal_handler_sets_flag_and_restores_previous():
  calls = []
  original = signal.signal(signal.SIGUSR1, lambda signum, frame: calls.append(signum))
  try:
    before = signal.getsignal(signal.SIGUSR1)
    with SignalHandler(signals=(signal.SIGUSR1,)) as stop:
      assert not stop.requested
      os.kill(os.getpid(), signal.SIGUSR1)
      assert _wait_for(lambda: stop.requested)
      assert stop.signal_name == "SIGUSR1" and calls == []
      os.kill(os.getpid(), signal.SIGUSR1)  # A second signal goes to the previous handler.
      assert _wait_for(lambda: calls == [signal.SIGUSR1])
    assert signal.getsignal(signal.SIGUSR1) is before
  finally:
    signal.signal(signal.SIGUSR1, original)


def test_signal_handler_restores_on_exit():
  before = signal.getsignal(signal.SIGTERM)
  with SignalHandler() as stop:
    assert signal.getsignal(signal.SIGTERM) != before
    os.kill(os.getpid(), signal.SIGTERM)
    assert _wait_for(lambda: stop.requested)
  assert signal.getsignal(signal.SIGTERM) == before
