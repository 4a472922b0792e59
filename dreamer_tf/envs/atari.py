"""Atari 2600 games through the Arcade Learning Environment, with the 2023 paper's preprocessing.

``atari_<game>`` (Atari 200M: sticky actions, all 18 actions) and ``atari100k_<game>``
(Atari 100k: no sticky actions, the game's minimal action set) share this environment;
the difference lies in the ``env.atari`` block of their presets.

Preprocessing per agent step (Hafner et al. 2023, Appendix on Atari; Machado et al. 2018):
  * action repeat (4): rewards summed over the repeated emulator frames,
  * max-pooling of the last two emulator frames (removes sprite flicker),
  * sticky actions: every emulator frame executes the previous frame's action with
    probability ``sticky_prob`` (0.25) instead of the chosen one,
  * a uniform number in ``[0, noops)`` of no-op frames at reset, as the 2023 code (``noops`` 0,
    none, for Atari 200M; 30 for Atari 100k), not counted towards the time limit,
  * RGB (or gray) frames resized to ``size`` with opencv,
  * a time limit of ``length`` emulator frames (108,000 = 30 minutes) that truncates (discount 1),
  * lives unused for termination by default (``lives: discount`` or ``reset`` are options).
"""

from __future__ import annotations

import difflib

import numpy as np
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from dreamer_tf.envs.base import DictEnvironment, make_step
from dreamer_tf.envs.resize import check_resize_method, resize_image
from dreamer_tf.errors import MissingDependencyError, UserError

_GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)


def _import_ale():
  try:
    import ale_py
  except ImportError:
    raise MissingDependencyError("ale-py", "Atari environments") from None
  return ale_py


def games() -> list[str]:
  """All ALE game names (``atari_<game>``), e.g. ``pong``, ``ms_pacman``."""
  return sorted(_import_ale().roms.get_all_rom_ids())


def _rom_path(game: str, prefix: str = "atari") -> str:
  ale_py = _import_ale()
  valid = games()
  if game not in valid:
    close = difflib.get_close_matches(game, valid, n=1)
    hint = f"did you mean '{prefix}_{close[0]}'? " if close else ""
    raise UserError(f"unknown Atari game '{game}'; {hint}valid games: {', '.join(valid)}")
  return ale_py.roms.get_rom_path(game)


class AtariEnvironment(DictEnvironment):
  """One ALE game as a TF-Agents PyEnvironment with ``obs['image']`` (uint8 HxWxC).

  Args:
    game: ALE ROM id, e.g. ``pong``.
    size: ``(height, width)`` of the observation; the native 210x160 skips resizing.
    repeat: Emulator frames per agent step.
    sticky: Whether to use sticky actions.
    sticky_prob: Probability that a frame repeats the previous frame's action.
    gray: Gray-scale (``HxWx1``) instead of RGB.
    resize: ``area`` or ``bilinear``.
    actions: ``all`` (18 actions) or ``needed`` (the game's minimal set).
    lives: ``unused``, ``discount`` (life loss gives discount 0 without ending the episode)
      or ``reset`` (life loss ends the episode; the next reset continues the game).
    noops: No-op frames after a reset are drawn uniformly from ``[0, noops)`` (0: none).
    length: Time limit in emulator frames (0: none); reaching it truncates the episode.
    seed: Seeds the emulator and the sticky-action and no-op randomness.
  """

  def __init__(
    self,
    game: str,
    *,
    size=(64, 64),
    repeat: int = 4,
    sticky: bool = True,
    sticky_prob: float = 0.25,
    gray: bool = False,
    resize: str = "area",
    actions: str = "all",
    lives: str = "unused",
    noops: int = 0,
    length: int = 108000,
    seed: int = 0,
  ):
    super().__init__()
    ale_py = _import_ale()
    check_resize_method(resize, "env.atari.resize")
    if actions not in ("all", "needed"):
      raise UserError(f"env.atari.actions={actions!r} is not valid; use 'all' or 'needed'")
    if lives not in ("unused", "discount", "reset"):
      raise UserError(f"env.atari.lives={lives!r} is not valid; use 'unused', 'discount' or 'reset'")
    if repeat < 1:
      raise UserError(f"env.atari.repeat must be at least 1, got {repeat}")
    if not 0.0 <= sticky_prob <= 1.0:
      raise UserError(f"env.atari.sticky_prob must lie in [0, 1], got {sticky_prob}")
    self._size = (int(size[0]), int(size[1]))
    self._repeat = int(repeat)
    self._sticky_prob = float(sticky_prob) if sticky else 0.0
    self._gray = bool(gray)
    self._resize = resize
    self._lives_mode = lives
    self._noops = int(noops)
    self._length = int(length)
    self._rng = np.random.default_rng(seed)
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    self._ale = ale_py.ALEInterface()
    self._ale.setInt("random_seed", int(seed) % (2**31 - 1))
    self._ale.setFloat("repeat_action_probability", 0.0)  # Sticky actions are applied here.
    self._ale.setInt("max_num_frames_per_episode", 0)  # The time limit is applied here.
    self._ale.loadROM(_rom_path(game))
    action_set = self._ale.getLegalActionSet() if actions == "all" else self._ale.getMinimalActionSet()
    self._action_set = list(action_set)
    self._noop = ale_py.Action.NOOP
    height, width = self._ale.getScreenDims()
    self._buffers = [np.zeros((height, width, 3), np.uint8) for _ in range(2)]
    channels = 1 if self._gray else 3
    self._observation_spec = {"image": array_spec.ArraySpec(self._size + (channels,), np.uint8, name="image")}
    self._action_spec = array_spec.BoundedArraySpec((), np.int32, 0, len(self._action_set) - 1, name="action")
    self._prev_action = self._noop
    self._frames = 0
    self._lives = 0
    self._continue_game = False
    self.last_frame_actions: list = []  # Executed ALE actions of the last step (tests, debugging).

  @property
  def action_names(self) -> list[str]:
    """Names of the agent's actions, in action-index order."""
    return [a.name for a in self._action_set]

  def _reset(self):
    if not self._continue_game:
      self._ale.reset_game()
      self._frames = 0
      for _ in range(int(self._rng.integers(0, self._noops)) if self._noops else 0):
        self._ale.act(self._noop)
        if self._ale.game_over(with_truncation=False):
          self._ale.reset_game()
    self._continue_game = False
    self._lives = self._ale.lives()
    self._prev_action = self._noop
    self._ale.getScreenRGB(self._buffers[1])
    self._buffers[0][:] = self._buffers[1]  # A fresh frame in both pooling buffers.
    return ts.restart(self._observation())

  def _step(self, action):
    chosen = self._action_set[int(action)]
    reward = 0.0
    terminal = truncated = life_lost = False
    executed = []
    for index in range(self._repeat):
      act = chosen
      if self._sticky_prob and self._rng.random() < self._sticky_prob:
        act = self._prev_action
      self._prev_action = act
      executed.append(act)
      reward += self._ale.act(act)
      self._frames += 1
      terminal = self._ale.game_over(with_truncation=False)
      lives = self._ale.lives()
      life_lost = life_lost or lives < self._lives
      self._lives = lives
      truncated = bool(self._length) and self._frames >= self._length
      ended = terminal or truncated or (life_lost and self._lives_mode == "reset")
      if index == self._repeat - 2 and not ended:
        self._ale.getScreenRGB(self._buffers[0])
      if index == self._repeat - 1 or ended:
        self._ale.getScreenRGB(self._buffers[1])
        if index != self._repeat - 1 or self._repeat == 1:
          self._buffers[0][:] = self._buffers[1]  # No second frame to pool with.
        break
    self.last_frame_actions = executed
    obs = self._observation()
    if terminal:
      return make_step(obs, reward, last=True, terminal=True)
    if life_lost and self._lives_mode == "reset":
      self._continue_game = not truncated
      return make_step(obs, reward, last=True, terminal=True)
    if truncated:
      return make_step(obs, reward, last=True, terminal=False)
    discount = 0.0 if life_lost and self._lives_mode == "discount" else 1.0
    return make_step(obs, reward, last=False, terminal=False, discount=discount)

  def _observation(self):
    frame = np.maximum(self._buffers[0], self._buffers[1])
    if self._gray:
      frame = (frame.astype(np.float32) @ _GRAY_WEIGHTS).round().astype(np.uint8)[:, :, None]
    return {"image": np.ascontiguousarray(resize_image(frame, self._size, self._resize))}

  def close(self):
    self._ale = None


def make(task: str, config, seed: int = 0, prefix: str = "atari") -> AtariEnvironment:
  """Builds ``atari_<task>`` / ``atari100k_<task>`` from ``config.env.atari``."""
  c = config.env.atari
  _rom_path(task, prefix)
  return AtariEnvironment(
    task,
    size=tuple(c.size),
    repeat=c.repeat,
    sticky=c.sticky,
    sticky_prob=c.sticky_prob,
    gray=c.gray,
    resize=c.resize,
    actions=c.actions,
    lives=c.lives,
    noops=c.noops,
    length=c.length,
    seed=seed,
  )
