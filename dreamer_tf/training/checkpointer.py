"""Atomic, verified checkpoints, and clean stopping on SIGINT/SIGTERM.

Layout of a checkpoint directory::

  <directory>/ckpt-000000120000/    a complete checkpoint (never modified once renamed)
      model.index, model.data-*     the tf.train.Checkpoint of the trackables
      <name>/...                    extra payloads (e.g. the replay buffer)
      COMPLETE                      JSON manifest: step and {path: {size, sha256}} of every file
  <directory>/tmp-120000-4242/      a save in progress (or left by a crash; removed later)

A save writes everything into a new ``tmp-<step>-<pid>`` directory, fsyncs it, writes the
``COMPLETE`` manifest last and renames the directory to ``ckpt-<step:012d>`` in one atomic step,
so a crash at any point leaves either the previous checkpoints untouched or a new complete one.
Restoring verifies the manifest and falls back to the previous checkpoint if the newest is
corrupt (a truncated file, a bad disk block). Paths must be on a local (POSIX) filesystem.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import pathlib
import re
import shutil
import signal
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Union

import tensorflow as tf

from dreamer_tf.errors import UserError

MARKER = "COMPLETE"
TF_PREFIX = "model"
_CKPT_RE = re.compile(r"^ckpt-(\d+)$")
_TMP_RE = re.compile(r"^tmp-(\d+)-(\d+)")
# TensorFlow's error for a saved value of another shape than its variable.
_SHAPE_RE = re.compile(
  r"tensor with shape (\(.*?\)) when attempting to restore variable with shape (\(.*?\)) and name (\S+?)\.?$"
)
_MANIFEST_VERSION = 1

PayloadFns = Union[Iterable[Callable[[str], Any]], Mapping[str, Callable[[str], Any]], None]

_log = logging.getLogger(__name__)


class CorruptCheckpointError(Exception):
  """A checkpoint directory fails verification (missing marker, missing or altered file)."""


def checkpoint_step(path: str | os.PathLike) -> int:
  """Returns the step of a ``ckpt-<step>`` directory.

  Raises:
    ValueError: If the name is not a checkpoint directory name.
  """
  match = _CKPT_RE.match(pathlib.Path(path).name)
  if not match:
    raise ValueError(f"Not a checkpoint directory name: {path}")
  return int(match.group(1))


def _fsync(path: pathlib.Path) -> None:
  """Flushes a file or directory to disk (directories: best effort, not on every OS)."""
  flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
  try:
    fd = os.open(path, flags)
  except OSError:
    if path.is_dir():
      return
    raise
  try:
    os.fsync(fd)
  except OSError:
    if not path.is_dir():
      raise
  finally:
    os.close(fd)


def _sha256(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _payload_items(fns: PayloadFns) -> list[tuple[str | None, Callable[[str], Any]]]:
  if fns is None:
    return []
  if isinstance(fns, Mapping):
    return list(fns.items())
  return [(None, fn) for fn in fns]


def _pid_alive(pid: int) -> bool:
  if pid == os.getpid():
    return False  # Our own leftovers: saves are synchronous, so none is in progress.
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except OSError:
    return True  # Exists but belongs to someone else.
  return True


class Checkpointer:
  """Saves and restores trackables (variables, models, optimizers) plus extra payloads.

  Example::

    checkpointer = Checkpointer(logdir / "checkpoints", keep=2, agent=agent, step=step_var)
    checkpointer.restore(extra_restore_fns={"replay": replay.load})  # None on a fresh start.
    ...
    checkpointer.save(step, extra_save_fns={"replay": replay.save})

  Extra payload callables take a directory path: as a mapping ``{name: fn}`` each gets its own
  subdirectory ``<ckpt>/<name>`` (created for saving); as a list each gets the checkpoint
  directory itself. Works when called inside a ``tf.distribute`` strategy scope; which process
  saves under multi-worker training is the caller's decision.
  """

  def __init__(self, directory: str | os.PathLike, keep: int = 2, **trackables: Any):
    """Creates a checkpointer; the directory is created on the first save.

    Args:
      directory: Where the ``ckpt-*`` directories go.
      keep: How many of the newest checkpoints to keep (at least 1).
      **trackables: Objects for ``tf.train.Checkpoint`` (tf.Variable, Keras models, optimizers,
        tf.Module, ...), by name.
    """
    if keep < 1:
      raise ValueError(f"keep must be at least 1, got {keep}")
    self._directory = pathlib.Path(directory)
    self._keep = int(keep)
    self._checkpoint = tf.train.Checkpoint(**trackables) if trackables else None

  @property
  def directory(self) -> pathlib.Path:
    return self._directory

  def save(self, step: int, extra_save_fns: PayloadFns = None) -> pathlib.Path:
    """Writes a new complete checkpoint for ``step`` and deletes the ones beyond ``keep``.

    If a complete checkpoint for this step already exists it is kept unchanged.

    Args:
      step: The training step, used in the directory name.
      extra_save_fns: Callables ``fn(dirpath)`` that write extra files (see the class doc).

    Returns:
      The checkpoint directory ``<directory>/ckpt-<step:012d>``.
    """
    step = int(step)
    final = self._directory / f"ckpt-{step:012d}"
    if (final / MARKER).exists():
      try:
        self.verify(final)
      except CorruptCheckpointError as e:  # E.g. restore fell back past it: replace it, never keep it.
        _log.warning("Replacing the corrupt checkpoint %s (%s)", final, e)
        self._remove(final)
      else:
        _log.warning("A checkpoint for step %d already exists at %s; keeping it", step, final)
        return final
    self._directory.mkdir(parents=True, exist_ok=True)
    tmp = self._directory / f"tmp-{step}-{os.getpid()}"
    if tmp.exists():
      shutil.rmtree(tmp)
    tmp.mkdir()
    try:
      if self._checkpoint is not None:
        self._checkpoint.write(str(tmp / TF_PREFIX))
      for name, fn in _payload_items(extra_save_fns):
        target = tmp if name is None else tmp / name
        target.mkdir(parents=True, exist_ok=True)
        fn(str(target))
      files = {}
      for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
        _fsync(path)
        files[path.relative_to(tmp).as_posix()] = {"size": path.stat().st_size, "sha256": _sha256(path)}
      for path in sorted((p for p in tmp.rglob("*") if p.is_dir()), reverse=True):
        _fsync(path)
      manifest = {"version": _MANIFEST_VERSION, "step": step, "files": files}
      with open(tmp / MARKER, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
      _fsync(tmp)
      if final.exists():  # Without a marker: never complete, so nobody relies on it.
        self._remove(final)
      os.rename(tmp, final)
      _fsync(self._directory)
    except BaseException as e:
      shutil.rmtree(tmp, ignore_errors=True)
      if _disk_full(e):
        raise UserError(
          f"cannot save checkpoint {final.name} in {self._directory}: no space left on device; free space "
          "and rerun the same command to resume from the last complete checkpoint"
        ) from None
      raise
    self._prune()
    return final

  def checkpoints(self) -> list[pathlib.Path]:
    """All ``ckpt-*`` directories with a ``COMPLETE`` marker, oldest first (unverified)."""
    if not self._directory.is_dir():
      return []
    found = [p for p in self._directory.iterdir() if _CKPT_RE.match(p.name) and (p / MARKER).is_file()]
    return sorted(found, key=checkpoint_step)

  def latest(self) -> pathlib.Path | None:
    """The newest checkpoint whose manifest is valid and whose file sizes match, or None.

    Removes ``tmp-*`` directories left by crashed saves (not those of live processes). Checksums
    are checked by :meth:`restore`, not here.
    """
    self.remove_leftovers()
    for path in reversed(self.checkpoints()):
      try:
        self.verify(path, checksums=False)
      except CorruptCheckpointError as e:
        _log.warning("Skipping corrupt checkpoint %s: %s", path, e)
        continue
      return path
    return None

  def verify(self, path: str | os.PathLike, checksums: bool = True) -> dict[str, Any]:
    """Checks a checkpoint against its manifest.

    Args:
      path: A checkpoint directory.
      checksums: Whether to compare SHA-256 checksums too (reads every file), not just sizes.

    Returns:
      The manifest.

    Raises:
      CorruptCheckpointError: Naming the first problem found.
    """
    path = pathlib.Path(path)
    if not path.is_dir():
      raise CorruptCheckpointError("no such directory")
    try:
      with open(path / MARKER, encoding="utf-8") as f:
        manifest = json.load(f)
      files = manifest["files"]
      if not isinstance(files, dict):
        raise TypeError("'files' is not a mapping")
    except FileNotFoundError:
      raise CorruptCheckpointError(f"no {MARKER} marker (an unfinished save)") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise CorruptCheckpointError(f"unreadable {MARKER} manifest ({e})") from None
    for name, expected in files.items():
      file = path / name
      try:
        size = file.stat().st_size
      except FileNotFoundError:
        raise CorruptCheckpointError(f"file {name} is missing") from None
      if size != expected["size"]:
        raise CorruptCheckpointError(f"file {name} has {size} bytes, expected {expected['size']}")
      if checksums and _sha256(file) != expected["sha256"]:
        raise CorruptCheckpointError(f"file {name} fails its sha256 checksum")
    return manifest

  def restore(self, path: str | os.PathLike | None = None, extra_restore_fns: PayloadFns = None):
    """Restores the trackables and extra payloads from a verified checkpoint.

    Args:
      path: A checkpoint directory to restore exactly, or None for the newest valid one in the
        directory; a corrupt newest checkpoint is skipped with a warning, falling back to the
        previous one.
      extra_restore_fns: Callables ``fn(dirpath)`` that read the extra payloads; same form as
        ``extra_save_fns`` of :meth:`save`.

    Returns:
      The restored checkpoint directory, or None if ``path`` is None and there is no checkpoint.

    Raises:
      UserError: If ``path`` is given and is missing or corrupt, if every checkpoint in the
        directory is corrupt, or if a checkpoint does not match the trackables.
    """
    if path is not None:
      path = pathlib.Path(path)
      try:
        self.verify(path)
        self._load(path, extra_restore_fns)
      except (CorruptCheckpointError, tf.errors.OpError) as e:
        raise UserError(f"Cannot restore checkpoint {path}: {_reason(e)}; pass a valid ckpt-* directory") from None
      _log.info("Restored checkpoint %s", path)
      return path
    self.remove_leftovers()
    candidates = list(reversed(self.checkpoints()))
    for index, candidate in enumerate(candidates):
      try:
        self.verify(candidate)
        self._load(candidate, extra_restore_fns)
      except (CorruptCheckpointError, tf.errors.OpError) as e:
        fallback = candidates[index + 1].name if index + 1 < len(candidates) else "none left"
        _log.warning("Checkpoint %s is corrupt (%s); falling back to: %s", candidate, _reason(e), fallback)
        continue
      _log.info("Restored checkpoint %s", candidate)
      return candidate
    if candidates:
      raise UserError(
        f"All {len(candidates)} checkpoints in {self._directory} are corrupt; move that directory "
        "away to start training from scratch"
      )
    return None

  def remove_leftovers(self) -> list[pathlib.Path]:
    """Deletes ``tmp-*`` directories of crashed saves (skips those of live processes)."""
    removed = []
    if not self._directory.is_dir():
      return removed
    for path in self._directory.iterdir():
      match = _TMP_RE.match(path.name)
      if not match or not path.is_dir() or _pid_alive(int(match.group(2))):
        continue
      _log.info("Removing %s left by an interrupted save", path)
      shutil.rmtree(path, ignore_errors=True)
      removed.append(path)
    return removed

  def _load(self, path: pathlib.Path, extra_restore_fns: PayloadFns) -> None:
    if self._checkpoint is not None:
      try:
        status = self._checkpoint.read(str(path / TF_PREFIX))
      except ValueError as e:  # A saved value of another shape than its variable (another model size or layer).
        _expect_partial(e)
        raise _mismatch(path, _shape_reason(e)) from None
      try:
        status.assert_existing_objects_matched()
      except AssertionError:
        status.expect_partial()  # The error below says it all; silence TensorFlow's warnings.
        raise _mismatch(path, "some model variables have no saved value") from None
      status.expect_partial()
    for name, fn in _payload_items(extra_restore_fns):
      target = path if name is None else path / name
      if not target.is_dir():
        raise UserError(f"Checkpoint {path} has no '{name}' payload; it was saved without one")
      fn(str(target))

  def _prune(self) -> None:
    for old in self.checkpoints()[: -self._keep]:
      self._remove(old)

  def _remove(self, path: pathlib.Path) -> None:
    # Rename first so that an interrupted deletion leaves a tmp-* leftover, never a half
    # deleted directory that still looks like a checkpoint.
    doomed = self._directory / f"tmp-{checkpoint_step(path)}-{os.getpid()}-deleting"
    if doomed.exists():
      shutil.rmtree(doomed)
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def _mismatch(path: pathlib.Path, reason: str) -> UserError:
  return UserError(
    f"Checkpoint {path} does not match the model ({reason}): it was written with a different "
    "configuration; use a new logdir or the same configuration"
  )


def _expect_partial(error: BaseException) -> None:
  """Silences the warnings of a restore that ``error`` interrupted (one per unrestored value, logged later).

  ``tf.train.Checkpoint.read`` raises before it returns the status whose ``expect_partial()`` would
  silence them; the restore's coordinator is a local of TensorFlow's frames in the traceback.
  """
  tb = error.__traceback__
  while tb is not None:
    for value in tb.tb_frame.f_locals.values():
      if type(value).__name__ == "_CheckpointRestoreCoordinator":
        value.expect_partial = True
    tb = tb.tb_next


def _shape_reason(error: ValueError) -> str:
  """TensorFlow's ``Received incompatible tensor with shape ...`` error as a short reason."""
  text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  match = _SHAPE_RE.search(text)
  if not match:
    return text[:200]
  saved, wanted, name = match.groups()
  return f"the saved value of {name} has shape {saved}, the model's variable {wanted}"


def _disk_full(error: BaseException) -> bool:
  """Whether a save failed for lack of space (Python's OSError or TensorFlow's SaveV2 error)."""
  if isinstance(error, OSError):
    return error.errno in (errno.ENOSPC, errno.EDQUOT)
  return isinstance(error, tf.errors.OpError) and "No space left on device" in (error.message or "")


def _reason(error: BaseException) -> str:
  if isinstance(error, tf.errors.OpError):
    return f"TensorFlow could not read it: {error.message.strip().splitlines()[0][:200]}"
  return str(error)


class SignalHandler:
  """Turns SIGINT/SIGTERM into a flag that the training loop polls to checkpoint and exit.

  A second signal restores the previous handlers and passes the signal on to them (so a second
  Ctrl-C interrupts at once). The previous handlers are restored on exit. Signal handlers can
  only be installed from the main thread; elsewhere this logs a warning and does nothing.

  Example::

    with SignalHandler() as stop:
      while step < total and not stop.requested:
        ...
      checkpointer.save(step)
  """

  def __init__(self, signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM)):
    self._signals = tuple(signals)
    self._previous: dict[int, Any] = {}
    self._received: int | None = None

  @property
  def requested(self) -> bool:
    """Whether a stop was requested by a signal."""
    return self._received is not None

  @property
  def signal_name(self) -> str | None:
    """Name of the signal received, e.g. ``SIGTERM``, or None."""
    return None if self._received is None else signal.Signals(self._received).name

  def install(self) -> SignalHandler:
    if threading.current_thread() is not threading.main_thread():
      _log.warning("SignalHandler used outside the main thread: SIGINT/SIGTERM keep their handlers")
      return self
    for signum in self._signals:
      self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def uninstall(self) -> None:
    for signum, previous in self._previous.items():
      with contextlib.suppress(ValueError, TypeError):
        signal.signal(signum, signal.SIG_DFL if previous is None else previous)
    self._previous = {}

  def __enter__(self) -> SignalHandler:
    return self.install()

  def __exit__(self, *exc_info) -> None:
    self.uninstall()

  def _handle(self, signum: int, frame: Any) -> None:
    name = signal.Signals(signum).name
    if self._received is None:
      self._received = signum
      _log.warning("Received %s: stopping after the current step and saving a checkpoint (send again to abort)", name)
      return
    previous = self._previous.get(signum)
    self.uninstall()
    if callable(previous):
      previous(signum, frame)
    elif previous in (signal.SIG_DFL, None):
      signal.raise_signal(signum)
