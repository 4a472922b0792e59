"""DreamerAgent: one update of world model, actor and critic as a TF-Agents agent."""

import collections

import tensorflow as tf
from tf_agents.agents import tf_agent
from tf_agents.trajectories import time_step as ts

from dreamer_tf.agent.actor_critic import ActorCritic
from dreamer_tf.agent.dreamer_policy import DreamerPolicy, action_size_of
from dreamer_tf.agent.laprop import LaProp
from dreamer_tf.agent.optimizer import Adam
from dreamer_tf.agent.world_model import WorldModel, observation_classes
from dreamer_tf.replay.spec import LATENT_KEY, REPLAY_ID_KEY, replay_step_spec

keras = tf.keras

Optimizers = collections.namedtuple("Optimizers", ["model", "actor", "critic"])


def make_optimizer(opt_config, mixed_float16: bool):
  """Adam with the configured learning rate and epsilon, in the 2023 code's form (see ``optimizer.Adam``)."""
  opt = Adam(learning_rate=opt_config.lr, epsilon=opt_config.eps)
  if mixed_float16:
    opt = keras.mixed_precision.LossScaleOptimizer(opt)
  return opt


def make_laprop(opt_config, mixed_float16: bool):
  """The current generation's one optimizer (see ``laprop.LaProp``) from ``model.opt``."""
  c = opt_config
  opt = LaProp(c.lr, c.agc, c.pmin, c.beta1, c.beta2, c.eps, c.warmup)
  if mixed_float16:
    opt = keras.mixed_precision.LossScaleOptimizer(opt)
  return opt


class DreamerAgent(tf_agent.TFAgent):
  """DreamerV3 (arXiv 2301.04104v1) as a TF-Agents ``TFAgent``.

  ``train(experience)`` takes a batch of replayed sequences in the step format
  (``[B, T, ...]``, see ``docs/CONTRIBUTING.md``) and performs one update of
  the world model (Eq. 5), the actor (Eq. 11) and the critic (Eq. 10) with
  three Adam optimizers and global-norm gradient clipping, then moves the slow
  critic. It returns a ``LossInfo`` whose ``extra`` dict holds every loss term
  and diagnostic as scalars.

  With the current generation's replay context (``replay.context`` = K = 1) each replayed window
  has ``K + T`` steps, the per-step ``latent`` columns and its ``replay_id``: the stored latent of
  step K - 1 and the action taken there start the posterior, the last T steps are trained on, and
  ``extra["replay"]`` returns the posterior latents of those T steps with the ids, for the
  learner's write-back into replay (``SequenceReplayBuffer.update(ids, latents, offset=K)``), as
  the author's current code does (``dreamerv3/agent.py:Agent.train``).

  Under a ``tf.distribute`` strategy, call ``train`` through ``strategy.run``:
  each replica's losses are divided by the number of replicas and gradients
  are summed across replicas before clipping, so clipping acts on the
  gradient of the global-batch mean.

  Args:
    time_step_spec: The environment's ``TimeStep`` spec (dict observation).
    action_spec: Scalar integer (discrete) or float vector (continuous) spec.
    config: The full configuration (uses ``model`` and ``run``).
    seed: Seed of the train step's random stream.
    train_step_counter: Optional counter variable.
  """

  def __init__(self, time_step_spec, action_spec, config, seed=0, train_step_counter=None):
    tf.Module.__init__(self, name="dreamer_agent")
    model_config = config.model
    self._config = config
    observation_spec = time_step_spec.observation
    self._obs_shapes = {k: tuple(s.shape) for k, s in observation_spec.items() if not k.startswith("log_")}
    self._discrete = action_spec.dtype.is_integer
    self._action_size = action_size_of(action_spec)
    self.world_model = WorldModel(
      self._obs_shapes, self._action_size, model_config, observation_classes(observation_spec), name="world_model"
    )
    self.actor_critic = ActorCritic(
      self.world_model.rssm.feat_size, self._action_size, self._discrete, model_config, name="actor_critic"
    )
    self._context = int(config.replay.context)
    mixed16 = config.run.precision == "mixed_float16"
    self._joint = model_config.optimizer == "laprop"
    if self._joint:
      # The current generation: one optimizer over all modules (AGC inside, no global-norm clip).
      self.optimizers = Optimizers(make_laprop(model_config.opt, mixed16), None, None)
      self._clip = Optimizers(None, None, None)
      self.optimizers.model.build([v for group in self._variable_groups() for v in group])
    else:
      self.optimizers = Optimizers(
        make_optimizer(model_config.model_opt, mixed16),
        make_optimizer(model_config.actor_opt, mixed16),
        make_optimizer(model_config.critic_opt, mixed16),
      )
      self._clip = Optimizers(model_config.model_opt.clip, model_config.actor_opt.clip, model_config.critic_opt.clip)
      for opt, variables in zip(self.optimizers, self._variable_groups()):
        opt.build(variables)
    self._rng = tf.random.Generator.from_seed(seed)
    policy = DreamerPolicy(time_step_spec, action_spec, self.world_model, self.actor_critic, greedy=True, seed=seed + 1)
    collect_policy = DreamerPolicy(
      time_step_spec,
      action_spec,
      self.world_model,
      self.actor_critic,
      greedy=False,
      seed=seed + 2,
      emit_latent=bool(self._context),
    )
    training_data_spec = replay_step_spec(config, observation_spec, action_spec)
    if self._context:
      training_data_spec[REPLAY_ID_KEY] = tf.TensorSpec([], tf.int64, REPLAY_ID_KEY)  # one per window
    super().__init__(
      time_step_spec,
      action_spec,
      policy,
      collect_policy,
      train_sequence_length=config.replay.batch_length + self._context,
      training_data_spec=training_data_spec,
      # Its own counter rather than TF-Agents' process-wide global step, so agents do not share one.
      train_step_counter=train_step_counter
      if train_step_counter is not None
      else tf.Variable(0, dtype=tf.int64, trainable=False, name="train_step"),
    )

  def _variable_groups(self):
    ac = self.actor_critic
    return (self.world_model.trainable_variables, ac.actor.trainable_variables, ac.critic.trainable_variables)

  def _initialize(self):
    return tf.no_op()

  def preprocess(self, experience):
    """Casts a replay batch for the model: one-hot discrete actions, float rewards."""
    action = experience["action"]
    if self._discrete:
      action = tf.one_hot(tf.cast(action, tf.int32) - int(self.action_spec.minimum), self._action_size)
    else:
      action = tf.reshape(tf.cast(action, tf.float32), tf.concat([tf.shape(action)[:2], [-1]], 0))
    obs = {k: experience["obs"][k] for k in self._obs_shapes}
    context = {k: experience[k] for k in (LATENT_KEY, REPLAY_ID_KEY) if self._context and k in experience}
    return dict(
      **context,
      obs=obs,
      action=action,
      reward=tf.cast(experience["reward"], tf.float32),
      is_first=tf.cast(experience["is_first"], tf.bool),
      is_terminal=tf.cast(experience["is_terminal"], tf.bool),
      is_last=tf.cast(experience["is_last"], tf.bool)
      if "is_last" in experience
      else tf.zeros_like(experience["is_first"], tf.bool),
    )

  def _scale_loss(self, index, loss):
    """Divides by the replica count and applies loss scaling; call inside the tape."""
    ctx = tf.distribute.get_replica_context()
    replicas = ctx.num_replicas_in_sync if ctx is not None else 1
    scaled = loss / replicas
    opt = self.optimizers[index]
    if isinstance(opt, keras.mixed_precision.LossScaleOptimizer):
      scaled = opt.get_scaled_loss(scaled)
    return scaled

  def _apply(self, index, tape, scaled_loss, variables, allowed=True):
    """Computes, cross-replica sums, clips and applies one optimizer's gradients.

    The update is skipped (variables and optimizer state untouched) when the
    summed gradient is not finite or ``allowed`` is false. Under
    ``mixed_float16`` the LossScaleOptimizer makes that decision itself and
    lowers its loss scale.

    Returns:
      ``(global_norm, applied)``: the gradient norm before clipping and whether
      the update was applied.
    """
    opt = self.optimizers[index]
    ctx = tf.distribute.get_replica_context()
    replicas = ctx.num_replicas_in_sync if ctx is not None else 1
    loss_scale = isinstance(opt, keras.mixed_precision.LossScaleOptimizer)
    grads = tape.gradient(scaled_loss, variables)
    grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
    if loss_scale:
      grads = opt.get_unscaled_gradients(grads)
    if replicas > 1:
      grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    norm = tf.linalg.global_norm(grads)
    if self._clip[index] is None:
      clipped = grads
    else:
      clipped, _ = tf.clip_by_global_norm(grads, self._clip[index], use_norm=norm)
    if loss_scale:
      # The LossScaleOptimizer skips non-finite steps itself and lowers its scale: that is
      # loss scaling at work (logged as loss_scale), not a numerical fault of the model.
      opt.apply_gradients(zip(clipped, variables), skip_gradients_aggregation=True)
      return norm, tf.constant(True)
    finite = tf.logical_and(tf.math.is_finite(norm), allowed)

    def apply(grads):
      opt.apply_gradients(zip(grads, variables), skip_gradients_aggregation=True)
      return tf.constant(True)

    def skip():
      return tf.constant(False)

    if tf.__internal__.distribute.strategy_supports_no_merge_call():
      return norm, tf.cond(finite, lambda: apply(clipped), skip)

    # Under MirroredStrategy / MultiWorkerMirroredStrategy apply_gradients synchronises the
    # replicas (merge_call), which TensorFlow forbids inside a tf.cond in a replica context:
    # branch in the cross-replica context instead, as Keras' LossScaleOptimizer does. Every
    # replica holds the same summed gradients, so they agree on ``finite``.
    def cross_replica(strategy, finite, grads):
      def apply_all():
        strategy.extended.call_for_each_replica(apply, args=(grads,))
        return tf.constant(True)

      return tf.cond(strategy.experimental_local_results(finite)[0], apply_all, skip)

    return norm, ctx.merge_call(cross_replica, args=(finite, clipped))

  def _train(self, experience, weights=None):
    del weights
    data, start, ids = self.split_context(self.preprocess(experience))
    seeds = self._rng.make_seeds(3)
    if self._joint:
      return self._with_write_back(self._train_joint(data, start, seeds), ids)
    wm, ac = self.world_model, self.actor_critic
    model_vars, actor_vars, critic_vars = self._variable_groups()

    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(model_vars)
      model_loss, post, metrics = wm.loss(data, seeds[:, 0], start)
      scaled = self._scale_loss(0, model_loss)
    metrics["model_grad_norm"], model_ok = self._apply(0, tape, scaled, model_vars)

    # actor_loss moves the return normaliser's EMAs; a skipped update must leave them as they were.
    retnorm_before = [tf.identity(v) for v in ac.retnorm.variables]
    flatten = lambda x: tf.reshape(tf.stop_gradient(x), tf.concat([[-1], tf.shape(x)[2:]], 0))
    start = {k: flatten(v) for k, v in post.items()}
    start_cont = flatten(1.0 - tf.cast(data["is_terminal"], tf.float32))
    if ac.grad == "reinforce":
      # No gradient flows through imagination: imagine once, run the critic once under
      # its own tape and reuse its (stopped) values for the actor's returns.
      traj = ac.imagine(wm, start, start_cont, seeds[:, 1])
      with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(critic_vars)
        critic_dist = ac.critic(tf.stop_gradient(traj["feat"]))
        value = tf.stop_gradient(critic_dist.mean())
        ret = ac.lambda_returns(traj, value)
        critic_loss, critic_metrics = ac.critic_loss(traj, ret, critic_dist.logits)
        critic_scaled = self._scale_loss(2, critic_loss)
      critic_tape = tape
      with tf.GradientTape(watch_accessed_variables=False) as actor_tape:
        actor_tape.watch(actor_vars)
        actor_loss, ret, actor_metrics = ac.actor_loss(traj, value, ret)
        actor_scaled = self._scale_loss(1, actor_loss)
    else:
      # Dynamics backpropagation: the return's gradient flows through imagination.
      with tf.GradientTape(watch_accessed_variables=False) as actor_tape:
        actor_tape.watch(actor_vars)
        traj = ac.imagine(wm, start, start_cont, seeds[:, 1])
        actor_loss, ret, actor_metrics = ac.actor_loss(traj)
        actor_scaled = self._scale_loss(1, actor_loss)
      traj = tf.nest.map_structure(tf.stop_gradient, traj)
      ret = tf.stop_gradient(ret)
      with tf.GradientTape(watch_accessed_variables=False) as critic_tape:
        critic_tape.watch(critic_vars)
        critic_loss, critic_metrics = ac.critic_loss(traj, ret)
        critic_scaled = self._scale_loss(2, critic_loss)
    metrics.update(actor_metrics)
    metrics.update(critic_metrics)
    metrics["actor_grad_norm"], actor_ok = self._apply(1, actor_tape, actor_scaled, actor_vars, model_ok)
    metrics["critic_grad_norm"], critic_ok = self._apply(2, critic_tape, critic_scaled, critic_vars, model_ok)
    # A non-finite loss or gradient skips the update (the slow critic and counter included).
    applied = tf.reduce_all(tf.stack([model_ok, actor_ok, critic_ok]))
    metrics["nonfinite"] = 1.0 - tf.cast(applied, tf.float32)
    for variable, before in zip(ac.retnorm.variables, retnorm_before):
      variable.assign(tf.where(applied, variable, before))  # where, not a blend: NaN * 0 is NaN
    ac.update_slow_critic(applied)
    self.train_step_counter.assign_add(tf.cast(applied, self.train_step_counter.dtype))
    if isinstance(self.optimizers.model, keras.mixed_precision.LossScaleOptimizer):
      metrics["loss_scale"] = tf.cast(self.optimizers.model.loss_scale, tf.float32)
    metrics = {k: tf.cast(v, tf.float32) for k, v in metrics.items()}
    total = model_loss + actor_loss + critic_loss
    return self._with_write_back((tf_agent.LossInfo(loss=total, extra=metrics), post), ids)

  def split_context(self, data):
    """Splits a preprocessed batch of ``K + T`` steps into the T trained steps and their start.

    Returns:
      ``(data, start, ids)``: the batch of the last T steps (without the latent columns); None or
      the replay context's start state for :meth:`WorldModel.observe` (the stored ``deter`` and
      ``stoch`` of step K - 1 and the action taken there); None or the windows' ids ``[B]``.
    """
    if not self._context:
      return data, None, None
    k = self._context
    if LATENT_KEY not in data or REPLAY_ID_KEY not in data:
      raise ValueError(
        f"replay.context={k} needs batches with '{LATENT_KEY}' columns and '{REPLAY_ID_KEY}' "
        "(SequenceReplayBuffer.as_dataset(B, T + K, with_ids=True) of a replay_step_spec replay)"
      )
    latent, ids = data.pop(LATENT_KEY), data.pop(REPLAY_ID_KEY)
    start = {"deter": latent["deter"][:, k - 1], "stoch": latent["stoch"][:, k - 1], "action": data["action"][:, k - 1]}
    return tf.nest.map_structure(lambda x: x[:, k:], data), start, ids

  def _with_write_back(self, result, ids):
    """The ``LossInfo`` of an update, with ``extra["replay"]`` (ids and posterior latents) under the context."""
    info, post = result
    if ids is None:
      return info
    latents = {f"{LATENT_KEY}/{k}": tf.cast(tf.stop_gradient(post[k]), tf.float32) for k in ("deter", "stoch")}
    return info._replace(extra={**info.extra, "replay": {"ids": ids, **latents}})

  def _train_joint(self, data, start, seeds):
    """One update of all modules with one optimizer: the current generation (arXiv 2301.04104v2).

    As the author's ``dreamerv3/agent.py:Agent.loss``: the world model loss, the actor and critic
    losses on trajectories imagined from every posterior state (imagination recorded on no tape:
    its features are constants, actions are trained by REINFORCE), and the replay value loss, whose
    gradient reaches the world model, are summed and differentiated together; LaProp applies the
    update (AGC per variable inside). A non-finite gradient skips the update.
    """
    wm, ac = self.world_model, self.actor_critic
    variables = [v for group in self._variable_groups() for v in group]
    retnorm_before = [tf.identity(v) for v in ac.retnorm.variables]
    flatten = lambda x: tf.reshape(tf.stop_gradient(x), tf.concat([[-1], tf.shape(x)[2:]], 0))
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(variables)
      model_loss, post, metrics = wm.loss(data, seeds[:, 0], start)
      with tape.stop_recording():
        start = {k: flatten(v) for k, v in post.items()}
        start_cont = flatten(1.0 - tf.cast(data["is_terminal"], tf.float32))
        traj = ac.imagine(wm, start, start_cont, seeds[:, 1])
      critic_dist = ac.critic(tf.stop_gradient(traj["feat"]))
      value = tf.stop_gradient(critic_dist.mean())
      ret = ac.lambda_returns(traj, value)
      critic_loss, critic_metrics = ac.critic_loss(traj, ret, critic_dist.logits)
      actor_loss, ret, actor_metrics = ac.actor_loss(traj, value, ret)
      loss = model_loss + actor_loss + critic_loss
      if self._config.model.loss_scales.repval:
        boot = tf.reshape(ret[0], tf.shape(data["reward"]))
        repval_loss, repval_metrics = ac.replay_value_loss(wm.rssm.get_feat(post), data, boot)
        loss += repval_loss
        metrics.update(repval_metrics)
      scaled = self._scale_loss(0, loss)
    metrics.update(actor_metrics)
    metrics.update(critic_metrics)
    metrics["grad_norm"], applied = self._apply(0, tape, scaled, variables)
    metrics["nonfinite"] = 1.0 - tf.cast(applied, tf.float32)
    for variable, before in zip(ac.retnorm.variables, retnorm_before):
      variable.assign(tf.where(applied, variable, before))
    ac.update_slow_critic(applied)
    self.train_step_counter.assign_add(tf.cast(applied, self.train_step_counter.dtype))
    if isinstance(self.optimizers.model, keras.mixed_precision.LossScaleOptimizer):
      metrics["loss_scale"] = tf.cast(self.optimizers.model.loss_scale, tf.float32)
    metrics = {k: tf.cast(v, tf.float32) for k, v in metrics.items()}
    return tf_agent.LossInfo(loss=loss, extra=metrics), post

  def module_counts(self):
    """Trainable parameters per module, named as the author's current code names them.

    ``enc`` encoder, ``dyn`` RSSM, ``dec`` decoder, ``rew`` reward head, ``con`` continue head,
    ``pol`` actor, ``val`` critic (the slow critic, a copy of it, is not trained).
    """
    count = lambda layer: int(sum(v.shape.num_elements() for v in layer.trainable_variables))
    wm, ac = self.world_model, self.actor_critic
    modules = (wm.encoder, wm.rssm, wm.decoder, wm.reward_head, wm.cont_head, ac.actor, ac.critic)
    return dict(zip(("enc", "dyn", "dec", "rew", "con", "pol", "val"), map(count, modules)))

  def parameter_counts(self):
    """Trainable parameters of world model, actor and critic."""
    count = lambda vs: int(sum(v.shape.num_elements() for v in vs))
    model_vars, actor_vars, critic_vars = self._variable_groups()
    return {"world_model": count(model_vars), "actor": count(actor_vars), "critic": count(critic_vars)}


def time_step_spec_from(observation_spec):
  """A ``TimeStep`` spec for an observation spec dict (float32 reward)."""
  return ts.time_step_spec(observation_spec, tf.TensorSpec([], tf.float32, "reward"))
