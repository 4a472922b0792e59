"""The Collector: environments -> random prefill or collect policy -> replay observer.

One implementation of collection, used by local training (:class:`~dreamer_tf.training.loop.Trainer`)
and by the Reverb actors (:mod:`dreamer_tf.actor`)::

  BatchedPyEnvironment --PyDriver(RandomPyPolicy | collect policy)--> observer --> replay
                        \\--> EpisodeTracker (finished episodes), EpisodeVideoRecorder (env 0)

Until replay holds the prefill (:func:`~dreamer_tf.replay.prefill_steps` locally, the table's
``min_size_to_sample`` items with Reverb) a uniformly random policy acts, as in the 2023 code
(``embodied/run/train.py``); the caller decides when the prefill is over and says so with the
``random`` argument of :meth:`Collector.collect`. The observer is a
:class:`~dreamer_tf.replay.DreamerStepObserver` (local replay) or a
:class:`~dreamer_tf.replay.reverb_replay.ReverbStepObserver` (a Reverb table).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from tf_agents.drivers import py_driver
from tf_agents.policies import py_tf_eager_policy, random_py_policy

from dreamer_tf import envs as envs_lib
from dreamer_tf.training.episode_video import EpisodeVideoRecorder


@dataclasses.dataclass
class Collected:
  """What one :meth:`Collector.collect` call did.

  Attributes:
    steps: Agent steps taken: one per environment (the reset step after a LAST step included).
    episodes: One dict per finished episode (``return``, ``length``, ``env`` and ``log_`` values).
  """

  steps: int
  episodes: list[dict]


class Collector:
  """Steps a batched environment with the random prefill policy or the agent's collect policy.

  Every environment step is an agent step, the reset step after LAST included (PyDriver's
  ``max_steps`` skips those when counting, so the steps are counted here), and every TimeStep
  reaches the episode tracker and, when armed, the episode-video recorder.

  Args:
    env: A batched TF-Agents ``PyEnvironment`` (``envs.make_batched_env``).
    collect_policy: The agent's collect ``TFPolicy`` (its state resets on FIRST steps).
    observer: Called with every batched ``Trajectory`` (writes replay).
    seed: Seed of the random prefill policy; :meth:`start` offsets it by the steps already
      taken, so that a run stopped during the prefill does not repeat its actions.
    video_fn: Called with the ``[T, H, W, C]`` uint8 frames of one episode of environment 0
      after :meth:`arm_video` (None: no videos).
  """

  def __init__(self, env, collect_policy, observer, *, seed: int, video_fn: Callable | None = None):
    self.env = env
    self.observer = observer
    self.num_envs = int(env.batch_size or 1)
    self._seed = int(seed)
    self._video_fn = video_fn
    self._policy = py_tf_eager_policy.PyTFEagerPolicy(collect_policy, use_tf_function=True, batch_time_steps=False)
    self._tracker = envs_lib.EpisodeTracker(self.num_envs)
    self._recorder = EpisodeVideoRecorder()
    self._steps = 0
    self._finished: list[dict] = []
    self._driver = self._make_driver(self._policy)
    self._random_driver = None
    self._time_step = None
    self._policy_state = None

  def _make_driver(self, policy) -> py_driver.PyDriver:
    return py_driver.PyDriver(
      self.env, policy, observers=[self.observer], transition_observers=[self._on_transition], max_steps=self.num_envs
    )

  def _on_transition(self, transition) -> None:
    self._steps += self.num_envs
    next_time_step = transition[2]
    self._finished.extend(self._tracker.update(next_time_step))
    frames = self._recorder.add(next_time_step)
    if frames is not None and self._video_fn is not None:
      self._video_fn(frames)

  def start(self, steps_done: int = 0) -> None:
    """Resets the environments, the observer and the policy state; call before :meth:`collect`.

    Args:
      steps_done: Agent steps already taken (a resumed run), added to the random policy's seed.
    """
    random_policy = random_py_policy.RandomPyPolicy(
      self.env.time_step_spec(), self.env.action_spec(), seed=self._seed + int(steps_done)
    )
    self._random_driver = self._make_driver(random_policy)
    self.observer.reset()
    self._time_step = self.env.reset()
    self._tracker.update(self._time_step)
    self._policy_state = self._policy.get_initial_state(self.num_envs)

  def collect(self, random: bool = False) -> Collected:
    """Steps every environment once, with the random policy (``random``) or the collect policy."""
    if self._time_step is None:
      self.start()
    if random:
      self._time_step, _ = self._random_driver.run(self._time_step, ())
    else:
      self._time_step, self._policy_state = self._driver.run(self._time_step, self._policy_state)
    collected = Collected(self._steps, self._finished)
    self._steps, self._finished = 0, []
    return collected

  def arm_video(self) -> None:
    """Records the next whole episode of environment 0 and hands it to ``video_fn``."""
    self._recorder.arm()

  def close(self) -> None:
    self.env.close()
