"""Incremental, crash-safe save/restore of SequenceReplayBuffer."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from replay_testlib import check_window, fill, make_spec, window

from dreamer_tf.errors import UserError
from dreamer_tf.replay import SequenceReplayBuffer, checkpoint_exists


def make_replay(capacity=3000, spec=None, seed=0, num_streams=2):
  return SequenceReplayBuffer(spec or make_spec(), num_streams, capacity, chunk_size=32, block_size=8, seed=seed)


def assert_same(a, b):
  tf.nest.map_structure(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


def test_round_trip_is_exact(tmp_path):
  replay = make_replay()
  fill(replay, 0, 100)  # 3 full chunks and 4 steps of an open one.
  replay.save(tmp_path)
  assert checkpoint_exists(tmp_path)
  restored = make_replay(seed=123)
  restored.restore(tmp_path)
  assert restored.size == replay.size
  assert_same(restored.gather_all(), replay.gather_all())
  assert_same(restored.sample(8, 30), replay.sample(8, 30))  # The rng state is restored too.
  # Adding continues in the restored open chunk.
  fill(replay, 100, 140)
  fill(restored, 100, 140)
  assert_same(restored.gather_all(), replay.gather_all())


def test_incremental_save_writes_only_new_chunks(tmp_path):
  replay = make_replay(capacity=200)  # 100 steps per stream.
  fill(replay, 0, 70)
  first = replay.save(tmp_path)
  assert sorted(n.split("_")[0] for n in first["files_written"]) == ["chunk", "chunk", "open"]
  # Nothing new: nothing written.
  assert replay.save(tmp_path)["files_written"] == []
  fill(replay, 70, 80)  # Still inside chunk 2: only a new open-chunk file.
  second = replay.save(tmp_path)
  assert [n.split("_")[0] for n in second["files_written"]] == ["open"]
  assert len(second["files_removed"]) == 1 and second["files_removed"][0].startswith("open_")
  fill(replay, 80, 170)  # Completes chunks 2, 3, 4; evicts chunks 0 and 1 (start = 70).
  third = replay.save(tmp_path)
  names = sorted(third["files_written"])
  assert [n.split("_")[0] for n in names] == ["chunk", "chunk", "chunk", "open"]
  assert sum(n.startswith("chunk_") for n in third["files_removed"]) == 2
  on_disk = sorted(p.name for p in tmp_path.iterdir())
  manifest = json.loads((tmp_path / "manifest.json").read_text())
  assert on_disk == sorted([e["file"] for e in manifest["chunks"]] + ["manifest.json"])
  restored = make_replay(capacity=200)
  restored.restore(tmp_path)
  assert_same(restored.gather_all(), replay.gather_all())


def test_restore_into_smaller_capacity_evicts_oldest(tmp_path):
  replay = make_replay()
  fill(replay, 0, 100)
  replay.save(tmp_path)
  small = make_replay(capacity=80)
  small.restore(tmp_path)
  assert small.size == 80
  assert_same(small.gather_all()["reward"], replay.gather_all()["reward"][:, 60:])


def test_truncated_chunk_file_is_reported_by_name(tmp_path):
  replay = make_replay()
  fill(replay, 0, 100)
  replay.save(tmp_path)
  victim = sorted(tmp_path.glob("chunk_*.npz"))[1]
  data = victim.read_bytes()
  victim.write_bytes(data[: len(data) // 2])
  with pytest.raises(UserError, match=victim.name + ".*truncated or corrupt"):
    make_replay().restore(tmp_path)
  # Same size but damaged bytes: the zip CRC catches it.
  victim.write_bytes(data[:1000] + bytes(len(data) - 2000) + data[-1000:])
  with pytest.raises(UserError, match=victim.name):
    make_replay().restore(tmp_path)


def test_half_written_manifest_falls_back_to_previous_checkpoint(tmp_path):
  replay = make_replay()
  fill(replay, 0, 50)
  replay.save(tmp_path)
  before = replay.gather_all()
  # What a kill during the next save leaves: its new chunk files and a partial temporary manifest.
  fill(replay, 50, 130)
  scratch = tmp_path.parent / "scratch"
  replay.save(scratch)
  for path in scratch.glob("*.npz"):
    if not (tmp_path / path.name).exists():
      shutil.copy(path, tmp_path / path.name)
  text = (scratch / "manifest.json").read_text()
  (tmp_path / ".manifest.json.999.tmp").write_text(text[: len(text) // 2])
  restored = make_replay()
  restored.restore(tmp_path)
  assert_same(restored.gather_all(), before)
  # The next save removes the leftovers.
  restored.save(tmp_path)
  assert not list(tmp_path.glob(".*tmp"))
  manifest = json.loads((tmp_path / "manifest.json").read_text())
  assert len(list(tmp_path.glob("*.npz"))) == len(manifest["chunks"])


def test_corrupt_or_missing_manifest_is_a_user_error(tmp_path):
  with pytest.raises(UserError, match="manifest.json is missing"):
    make_replay().restore(tmp_path)
  replay = make_replay()
  fill(replay, 0, 40)
  replay.save(tmp_path)
  manifest = tmp_path / "manifest.json"
  manifest.write_text(manifest.read_text()[:100])
  with pytest.raises(UserError, match="manifest.json is corrupt"):
    make_replay().restore(tmp_path)


def test_spec_mismatch_is_a_one_line_user_error(tmp_path):
  replay = make_replay()
  fill(replay, 0, 40)
  replay.save(tmp_path)
  other = make_replay(spec=make_spec(action_dim=3))
  with pytest.raises(UserError) as error:
    other.restore(tmp_path)
  message = str(error.value)
  assert "\n" not in message and "'action'" in message and "another step spec" in message
  with pytest.raises(UserError, match="2 streams but this run uses 3"):
    make_replay(num_streams=3).restore(tmp_path)


CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {testdir!r})
    from replay_testlib import fill, make_spec
    from dreamer_tf.replay import SequenceReplayBuffer
    replay = SequenceReplayBuffer(make_spec(), 2, 400, chunk_size=32, block_size=8, seed=0)
    t = 0
    while True:
      fill(replay, t, t + 13)
      t += 13
      replay.save({directory!r})
      print(t, flush=True)
""")


def test_kill_9_during_saves_leaves_a_readable_checkpoint(tmp_path):
  directory = tmp_path / "replay"
  code = CHILD.format(testdir=str(pathlib.Path(__file__).parent), directory=str(directory))
  child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
  try:
    saved = [int(child.stdout.readline()) for _ in range(25)]  # Saves every 13 steps, evicting.
  finally:
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
  restored = SequenceReplayBuffer(make_spec(), 2, 400, seed=0)
  restored.restore(directory)
  end = restored.stream_length + int(restored.gather_all()["reward"].numpy()[0, 0])
  assert end >= saved[-1] and end % 13 == 0
  assert restored.stream_length == min(end, 200)
  batch = restored.sample(4, restored.stream_length)
  for i in range(4):
    check_window(window(batch, i), restored.stream_length)


FULL_DISK_CHILD = textwrap.dedent("""
    import errno, gc, os, resource, signal, sys
    sys.path.insert(0, {testdir!r})
    from replay_testlib import fill, make_spec
    from dreamer_tf.replay import SequenceReplayBuffer
    replay = SequenceReplayBuffer(make_spec(), 2, 3000, chunk_size=32, block_size=8, seed=0)
    fill(replay, 0, 40)
    replay.save({directory!r})  # A complete checkpoint first.
    fill(replay, 40, 200)  # Several new chunks: each is a file far larger than the limit below.
    # The file-size limit makes the kernel refuse a write midway (EFBIG, as ENOSPC on a full disk).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    try:
      replay.save({directory!r})
    except OSError as e:
      print("save failed:", errno.errorcode[e.errno], flush=True)
    gc.collect()  # Collects whatever the failed save left open.
    print("collected", flush=True)
""")


def test_a_write_that_fails_midway_leaves_nothing_open_and_the_last_checkpoint_whole(tmp_path):
  directory = tmp_path / "replay"
  code = FULL_DISK_CHILD.format(testdir=str(pathlib.Path(__file__).parent), directory=str(directory))
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.splitlines() == ["save failed: EFBIG", "collected"], result.stdout
  # No ZipFile left half-written ("Exception ignored in: <function ZipFile.__del__> ... seek of closed file").
  assert "Exception ignored" not in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]
  assert not [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]  # No partial file either.
  restored = make_replay()
  restored.restore(directory)  # The checkpoint before the failed save, whole.
  expected = make_replay()
  fill(expected, 0, 40)
  assert_same(restored.gather_all(), expected.gather_all())


def test_online_queue_round_trips(tmp_path):
  replay = SequenceReplayBuffer(make_spec(), 2, 3000, chunk_size=32, block_size=8, seed=0, online_length=10)
  fill(replay, 0, 45)
  replay.sample(3, 10)  # Takes 3 of the 8 queued windows.
  replay.save(tmp_path)
  assert json.loads((tmp_path / "manifest.json").read_text())["online_queue"][0] == [1, 11]
  restored = SequenceReplayBuffer(make_spec(), 2, 3000, chunk_size=32, block_size=8, seed=5, online_length=10)
  restored.restore(tmp_path)
  assert restored.queued == replay.queued == 5
  for _ in range(3):
    assert_same(restored.sample(4, 10), replay.sample(4, 10))
  plain = make_replay()  # The 2023 manifest has no queue.
  fill(plain, 0, 45)
  plain.save(tmp_path / "plain")
  assert "online_queue" not in json.loads((tmp_path / "plain" / "manifest.json").read_text())


def _latent_replay(seed=0):
  spec = make_spec()
  spec["latent"] = tf.TensorSpec((3,), tf.float32)
  return SequenceReplayBuffer(spec, 2, 3000, chunk_size=32, block_size=8, seed=seed)


def _fill_latent(replay, start, stop):
  from replay_testlib import make_step

  for t in range(start, stop):
    step = make_step(2, t)
    step["latent"] = np.stack([np.full(3, 1000 * s + t, np.float32) for s in range(2)])
    replay.add_batch(step)


def test_update_writes_back_at_sampled_windows_and_round_trips(tmp_path):
  replay = _latent_replay()
  _fill_latent(replay, 0, 100)  # Chunks 0-2 full, 3 open.
  replay.save(tmp_path)
  ids = np.array([(1 << 40) | 30, (0 << 40) | 5], np.int64)  # Stream 1 from step 30 (crosses chunks), stream 0 from 5.
  values = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3) + 0.5
  assert replay.update(ids, {"latent": values}, offset=1) == 2
  stored = replay.gather_all()["latent"].numpy()
  np.testing.assert_array_equal(stored[1, 31:35], values[0])
  np.testing.assert_array_equal(stored[0, 6:10], values[1])
  assert stored[1, 30, 0] == 1030 and stored[1, 35, 0] == 1035 and stored[0, 5, 0] == 5  # Neighbours untouched.
  assert replay.update(np.array([(0 << 40) | 98]), {"latent": values[:1]}, offset=1) == 0  # Past the end: skipped.
  with pytest.raises(UserError, match="not an unpacked column"):
    replay.update(ids, {"obs/image": np.zeros((2, 4, 8, 8, 3), np.uint8)})
  report = replay.save(tmp_path)  # Updated full chunks 0 and 1 are rewritten under new names.
  assert sorted(n for n in report["files_written"] if n.startswith("chunk_")) == [
    n for n in sorted(os.listdir(tmp_path)) if n.endswith("_r1.npz")
  ]
  assert len([n for n in os.listdir(tmp_path) if n.endswith("_r1.npz")]) == 2
  assert not [n for n in report["files_removed"] if n.endswith("_r1.npz")] and len(report["files_removed"]) >= 2
  restored = _latent_replay(seed=9)
  restored.restore(tmp_path)
  assert_same(restored.gather_all(), replay.gather_all())
  for _ in range(3):  # A resumed run samples the same (written-back) latents.
    assert_same(restored.sample(4, 20), replay.sample(4, 20))
  assert restored.update(ids, {"latent": values + 1}, offset=1) == 2  # Restored chunks stay writable.


def test_update_is_never_seen_half_written_by_a_sampling_thread():
  import threading

  replay = _latent_replay()
  _fill_latent(replay, 0, 100)
  ids = np.array([0, 1 << 40], np.int64)  # Both whole streams, steps 0..99, as one window each.
  write = lambda v: replay.update(ids, {"latent": np.full((2, 100, 3), v, np.float32)})
  write(0.0)
  stop, torn = threading.Event(), []

  def sample():
    while not stop.is_set():
      latent = replay.sample(8, 40)["latent"]
      torn.extend(int(w.min() != w.max()) for w in latent)

  interval = sys.getswitchinterval()
  sys.setswitchinterval(1e-6)  # Switch threads often, so that an unguarded write would be seen torn.
  try:
    thread = threading.Thread(target=sample)
    thread.start()
    for v in range(1, 300):
      write(float(v))
    stop.set()
    thread.join()
  finally:
    sys.setswitchinterval(interval)
  assert len(torn) > 0 and sum(torn) == 0
