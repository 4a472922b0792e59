"""Sequence replay: compressed uint8 chunks, its tf.data dataset, its checkpoint and observer."""

from dreamer_tf.replay.observer import DreamerStepObserver
from dreamer_tf.replay.sequence_replay import SequenceReplayBuffer, checkpoint_exists
from dreamer_tf.replay.spec import prefill_steps, replay_step_spec, step_spec

__all__ = [
  "DreamerStepObserver",
  "SequenceReplayBuffer",
  "checkpoint_exists",
  "prefill_steps",
  "replay_step_spec",
  "step_spec",
]
