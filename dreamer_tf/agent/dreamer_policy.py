"""The acting policy: filter observations with the RSSM, act with the actor."""

import tensorflow as tf
from tf_agents.policies import tf_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts

from dreamer_tf.replay.spec import LATENT_KEY, latent_spec


def action_size_of(action_spec) -> int:
  """The model's action vector size: one-hot size (discrete) or dimensions."""
  if action_spec.dtype.is_integer:
    return int(action_spec.maximum - action_spec.minimum + 1)
  return int(tf.TensorShape(action_spec.shape).num_elements())


class DreamerPolicy(tf_policy.TFPolicy):
  """A TF-Agents policy whose state carries the RSSM state and the last action.

  ``policy_state = {'deter': [B, deter], 'stoch': [B, stoch, classes],
  'prev_action': [B, A]}`` (one-hot previous action for discrete action
  spaces). On ``FIRST`` steps TF-Agents resets the state to zeros and the RSSM
  replaces it by its initial state. The collect policy samples from the actor;
  the greedy policy takes its mode (``greedy=True``).

  With ``emit_latent`` (the current generation's replay context, ``replay.context``) the step's
  ``info`` is ``{"latent": {"deter", "stoch"}}``: the posterior state after observing the step,
  which the replay observer stores beside it, as the author's current code writes its ``dyn``
  entries (``dreamerv3/agent.py:Agent.policy``).

  Args:
    time_step_spec: The environment's time step spec (observation dict).
    action_spec: A scalar integer ``BoundedTensorSpec`` or a float vector one.
    world_model: The agent's :class:`~dreamer_tf.agent.world_model.WorldModel`.
    actor_critic: The agent's :class:`~dreamer_tf.agent.actor_critic.ActorCritic`.
    greedy: Take the mode instead of sampling.
    seed: Seed of the policy's random stream.
    emit_latent: Return the posterior state as ``info["latent"]``.
  """

  def __init__(
    self, time_step_spec, action_spec, world_model, actor_critic, greedy=False, seed=0, name=None, emit_latent=False
  ):
    rssm = world_model.rssm
    self._action_size = action_size_of(action_spec)
    state_spec = {
      "deter": tf.TensorSpec([rssm.deter], tf.float32, "deter"),
      "stoch": tf.TensorSpec([rssm.stoch, rssm.classes], tf.float32, "stoch"),
      "prev_action": tf.TensorSpec([self._action_size], tf.float32, "prev_action"),
    }
    info_spec = {LATENT_KEY: latent_spec(rssm.deter, rssm.stoch, rssm.classes)} if emit_latent else ()
    super().__init__(
      time_step_spec,
      action_spec,
      policy_state_spec=state_spec,
      info_spec=info_spec,
      clip=True,
      automatic_state_reset=True,
      name=name or ("greedy_policy" if greedy else "collect_policy"),
    )
    self._world_model = world_model
    self._actor_critic = actor_critic
    self._greedy = greedy
    self._discrete = action_spec.dtype.is_integer
    self._rng = tf.random.Generator.from_seed(seed)
    self._emit_latent = emit_latent

  @property
  def greedy(self):
    return self._greedy

  def step(self, obs, is_first, state, seed, greedy):
    """One policy step on plain tensors; used by ``_action`` and the export.

    Args:
      obs: Observation dict of ``[B, ...]`` tensors.
      is_first: ``[B]`` bool, episode starts.
      state: The policy state dict.
      seed: Shape ``[2]`` integer seed.
      greedy: Python or tensor bool: take the mode.

    Returns:
      ``(env_action, new_state)``.
    """
    wm = self._world_model
    embed = wm.encoder({k: obs[k] for k in wm.encoder.cnn_keys + wm.encoder.mlp_keys})
    seed_obs, seed_act = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    latent = {"deter": state["deter"], "stoch": state["stoch"]}
    post, _ = wm.rssm.obs_step(latent, state["prev_action"], embed, is_first, seed_obs)
    dist = self._actor_critic.actor(wm.rssm.get_feat(post))
    if isinstance(greedy, bool):
      action = dist.mode() if greedy else dist.sample(seed_act)
    else:
      action = tf.cond(greedy, dist.mode, lambda: dist.sample(seed_act))
    action = tf.stop_gradient(tf.cast(action, tf.float32))
    if self._discrete:
      env_action = tf.cast(tf.argmax(action, -1), self.action_spec.dtype) + tf.cast(
        self.action_spec.minimum, self.action_spec.dtype
      )
    else:
      env_action = tf.reshape(
        tf.clip_by_value(action, -1.0, 1.0), tf.concat([tf.shape(action)[:1], self.action_spec.shape], 0)
      )
    new_state = {
      "deter": tf.cast(post["deter"], tf.float32),
      "stoch": tf.cast(post["stoch"], tf.float32),
      "prev_action": action,
    }
    return env_action, new_state

  def _action(self, time_step, policy_state, seed=None):
    is_first = tf.equal(time_step.step_type, ts.StepType.FIRST)
    step_seed = self._rng.make_seeds(1)[:, 0]
    action, state = self.step(time_step.observation, is_first, policy_state, step_seed, self._greedy)
    info = {LATENT_KEY: {"deter": state["deter"], "stoch": state["stoch"]}} if self._emit_latent else ()
    return policy_step.PolicyStep(action, state, info)

  def _distribution(self, time_step, policy_state):
    raise NotImplementedError("DreamerPolicy samples in _action; use action().")

  def _get_initial_state(self, batch_size):
    return tensor_spec.zero_spec_nest(self.policy_state_spec, outer_dims=[batch_size])
