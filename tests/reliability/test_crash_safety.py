"""Crash safety: ``kill -9`` a real training run at random moments and resume it each time.

After every SIGKILL the logdir must hold only complete checkpoints (each ``ckpt-*`` verifies
against its ``COMPLETE`` manifest, checksums included), and the next run must resume from the
newest of them with counters and replay that agree (one environment, replay capacity larger
than the steps: replay steps == agent steps; updates follow the train ratio), so that at most
the progress since the last checkpoint is lost. One of the kills lands inside a save (while a
``tmp-*`` directory is being written), the others after seeded random delays.
"""

import pathlib
import random
import re
import signal
import subprocess
import sys
import time

import pytest
from reliability_helpers import REPO, main_env

from dreamer_tf.training.checkpointer import MARKER, Checkpointer, checkpoint_step

KILLS = 4
DELAY_S = (3.0, 15.0)  # Seeded random delay after the run's first new checkpoint.
CKPT_SECS = 3
TRAIN_START, TRAIN_RATIO, REPLAYED = 79, 32, 4 * 16  # The debug preset: prefill 4 x 16 windows + 15 steps.
RUN_TIMEOUT_S = 240  # Per run, for start-up under load; the test fails rather than hangs.
RESTORED_RE = re.compile(r"Restored (\S+) at step (\d+) \((\d+) updates, replay (\d+) steps\)")


def expected_updates(steps: int) -> int:
  return max(0, (steps - TRAIN_START) * TRAIN_RATIO // REPLAYED)


class Watcher:
  """Polls the checkpoint directory of one run: complete checkpoints seen and saves in progress."""

  def __init__(self, directory: pathlib.Path, proc: subprocess.Popen):
    self.directory = directory
    self.proc = proc
    self.pid = proc.pid
    self.seen = {}  # step -> time first seen

  def poll(self) -> bool:
    """Records new ckpt-* directories (asserting each is complete); True while this run saves."""
    saving = False
    if not self.directory.is_dir():
      return False
    for path in list(self.directory.iterdir()):
      if path.name.startswith("ckpt-"):
        step = checkpoint_step(path)
        if step not in self.seen:
          # Renamed into place complete: the marker is there the moment the name is visible.
          assert (path / MARKER).is_file() or not path.exists(), f"{path} is visible without its {MARKER}"
          self.seen[step] = time.time()
      elif path.name.startswith("tmp-") and path.name.endswith(f"-{self.pid}"):
        saving = True
    return saving

  def _until(self, condition, timeout: float, interval: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
      if condition():
        return True
      assert self.proc.poll() is None, f"training exited early with {self.proc.returncode}"
      time.sleep(interval)
    return False

  def wait_for_checkpoint_after(self, step: int, timeout: float) -> bool:
    """Waits for a complete checkpoint newer than ``step``."""

    def newer():
      self.poll()
      return any(s > step for s in self.seen)

    return self._until(newer, timeout, 0.05)

  def wait_for_save(self, timeout: float) -> bool:
    """Waits (polling every 5 ms) until this run is writing a tmp-* directory."""
    return self._until(self.poll, timeout, 0.005)

  def watch(self, seconds: float) -> None:
    """Keeps checking new ckpt-* directories for ``seconds``."""
    self._until(lambda: self.poll() and False, seconds, 0.05)


def start(args, log_dir: pathlib.Path, index: int):
  out = open(log_dir / f"stdout-{index}.txt", "w")
  err = open(log_dir / f"stderr-{index}.txt", "w")
  proc = subprocess.Popen(
    [sys.executable, "-m", "dreamer_tf.main", *args], cwd=REPO, env=main_env(), stdout=out, stderr=err
  )
  return proc, out, err


def verify_all(directory: pathlib.Path) -> list[int]:
  """Verifies every ckpt-* directory (checksums included); returns their steps."""
  checkpointer = Checkpointer(directory)
  steps = []
  for path in sorted(directory.glob("ckpt-*")):
    manifest = checkpointer.verify(path, checksums=True)  # Raises CorruptCheckpointError.
    assert manifest["step"] == checkpoint_step(path)
    steps.append(manifest["step"])
  return steps


def check_restored(stderr: str, directory: pathlib.Path, step: int) -> tuple[int, int, int]:
  found = RESTORED_RE.findall(stderr)
  assert len(found) == 1, stderr[-3000:]
  path, agent_steps, updates, replay = found[0]
  agent_steps, updates, replay = int(agent_steps), int(updates), int(replay)
  assert path == str(directory / f"ckpt-{step:012d}") and agent_steps == step, (found, step)
  assert replay == agent_steps, f"replay holds {replay} steps but the agent took {agent_steps}"
  assert updates == expected_updates(agent_steps), (updates, agent_steps)
  return agent_steps, updates, replay


@pytest.mark.slow
def test_sigkill_at_random_moments_resumes_from_the_last_complete_checkpoint(tmp_path):
  rng = random.Random(9)
  logdir = tmp_path / "run"
  directory = logdir / "checkpoints"
  args = [
    "--env=atari_pong",
    "--configs=debug",
    f"--override=run.checkpoint_every_secs={CKPT_SECS}",
    "--override=env.atari.length=400",
    "--steps=100000",
    f"--logdir={logdir}",
  ]
  mid_save_kill = rng.randrange(1, KILLS)  # Not the first: that one may still be compiling.
  restored_step = None
  report = []
  for index in range(KILLS):
    proc, out, err = start(args, tmp_path, index)
    try:
      watcher = Watcher(directory, proc)
      baseline = -1 if restored_step is None else restored_step
      assert watcher.wait_for_checkpoint_after(baseline, RUN_TIMEOUT_S), "no new checkpoint in time"
      if index == mid_save_kill:
        moment = "inside a save" if watcher.wait_for_save(60) else "after 60 s without catching a save"
      else:
        delay = rng.uniform(*DELAY_S)
        watcher.watch(delay)
        moment = f"{delay:.1f} s after its first checkpoint"
      proc.send_signal(signal.SIGKILL)
      proc.wait(timeout=60)
      killed_at = time.time()
    finally:
      if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=60)
      out.close()
      err.close()
    assert proc.returncode == -signal.SIGKILL
    stderr = (tmp_path / f"stderr-{index}.txt").read_text()
    assert "Traceback" not in stderr, stderr[-3000:]
    if restored_step is not None:
      check_restored(stderr, directory, restored_step)
    # Interrupted saves of earlier (dead) runs were cleaned up when this one restored.
    assert all(p.name.endswith(f"-{proc.pid}") for p in directory.glob("tmp-*")), list(directory.glob("tmp-*"))
    steps = verify_all(directory)
    assert steps, "no complete checkpoint after the kill"
    newest = max(steps)
    # A save may have completed between the watcher's last look and the kill: look once more (the run is
    # dead, so the directory is final). Nothing newer than the last complete save was lost, and nothing
    # seen before was ever rolled back (max(seen) would then exceed the newest complete checkpoint).
    watcher.poll()
    assert newest == max(watcher.seen), (newest, watcher.seen)
    assert restored_step is None or newest > restored_step
    age = killed_at - watcher.seen[newest]
    report.append(f"kill {index + 1} {moment}: newest checkpoint step {newest}, saved {age:.1f} s before")
    restored_step = newest

  # A last run resumes from the newest complete checkpoint and stops at once (--steps equals it).
  proc, out, err = start([*args[:-2], f"--steps={restored_step}", args[-1]], tmp_path, KILLS)
  try:
    proc.wait(timeout=RUN_TIMEOUT_S)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait(timeout=60)
    out.close()
    err.close()
  stderr = (tmp_path / f"stderr-{KILLS}.txt").read_text()
  stdout = (tmp_path / f"stdout-{KILLS}.txt").read_text()
  assert proc.returncode == 0, stderr[-3000:]
  _, updates, _ = check_restored(stderr, directory, restored_step)
  assert f"done: {restored_step} agent steps, {updates} updates" in stdout
  assert not list(directory.glob("tmp-*")), "a crashed save's tmp-* directory was left behind"
  verify_all(directory)
  print("\n".join(report))
