"""`--configs=nature`: the current generation's presets, sizes, domain blocks and generation errors."""

import pytest
from nature_testlib import SIZES  # The author's deter / hidden / classes, depth, units per size.

from dreamer_tf import config as config_lib
from dreamer_tf.config import ConfigError, load_config


def _size(model):
  assert model.units == model.vector_units  # hidden (RSSM), units of every MLP and of the decoder
  return (model.deter, model.units, model.classes, model.cnn_depth, model.vector_units)


@pytest.mark.parametrize("size", sorted(SIZES))
def test_size_presets_are_the_author_sizes(size):
  assert _size(load_config(None, ["nature", size]).model) == SIZES[size]


def test_nature_is_the_current_code_at_size200m():
  config = load_config(None, ["nature"])
  m = config.model
  assert _size(m) == SIZES["size200m"]
  assert (m.core, m.norm, m.cnn, m.twohot, m.blocks, m.stoch, m.norm_eps) == (
    "blockgru",
    "rms",
    "pooling",
    "symexp",
    8,
    32,
    1e-4,
  )
  assert (m.prior_layers, m.post_layers, m.dyn_layers, m.bspace) == (2, 1, 1, 8)
  assert (m.head_layers, m.layers, m.vector_layers) == (1, 3, 3)
  assert (m.reward_outscale, m.critic_outscale, m.actor_outscale) == (0.0, 0.0, 0.01)
  assert (m.loss_scales.dyn, m.loss_scales.rep, m.free_nats) == (1.0, 0.1, 1.0)
  assert m.contdisc and m.onehot_obs and m.actor_unimix == 0.0 and m.unimix == 0.01
  assert (m.actor_grad_disc, m.actor_grad_cont) == ("reinforce", "reinforce")
  assert (config.run.train_ratio, config.run.envs, config.replay.capacity) == (32.0, 16, 5_000_000)
  assert (config.replay.batch_size, config.replay.batch_length) == (16, 64)


def test_defaults_stay_the_2023_generation():
  m = load_config(None, []).model
  assert (m.core, m.norm, m.cnn, m.twohot, m.head_layers, m.contdisc, m.onehot_obs) == (
    "gru",
    "layer",
    "strided",
    "symlog",
    0,
    False,
    False,
  )


@pytest.mark.parametrize(
  "env_name, expected",
  [
    ("atari_pong", dict(train_ratio=32.0, envs=16, atari=([96, 96], True, True, "all", 30, 4), size="size200m")),
    (
      "atari100k_pong",
      dict(train_ratio=256.0, envs=1, atari=([64, 64], False, False, "needed", 30, 4), size="size200m"),
    ),
    ("dmcproprio_walker_walk", dict(train_ratio=1024.0, envs=16, repeat=1, size="size1m")),
    ("dmc_walker_walk", dict(train_ratio=256.0, envs=16, repeat=1, size="size200m")),
    ("crafter_reward", dict(train_ratio=512.0, envs=1, size="size200m")),
    ("bsuite_catch/0", dict(train_ratio=1024.0, envs=1, size="size200m")),
    ("procgen_coinrun", dict(train_ratio=64.0, envs=16, size="size200m")),
  ],
)
def test_domain_blocks_of_the_current_code(env_name, expected):
  config = load_config(env_name, ["nature"])
  assert (config.run.train_ratio, config.run.envs) == (expected["train_ratio"], expected["envs"])
  assert _size(config.model) == SIZES[expected["size"]]
  assert config.model.core == "blockgru"
  if "atari" in expected:
    a = config.env.atari
    assert (a.size, a.gray, a.sticky, a.actions, a.noops, a.repeat) == expected["atari"]
    assert a.lives == "unused"
  if "repeat" in expected:
    assert config.env.dmc.repeat == expected["repeat"]
  if env_name.startswith("procgen"):
    assert config.env.procgen.size == [96, 96]
  if env_name.startswith("dmcproprio"):
    assert (config.model.cnn_keys, config.model.mlp_keys) == ("$^", ".*")


def test_a_size_after_nature_overrides_the_domain_size():
  assert _size(load_config("dmcproprio_walker_walk", ["nature", "size12m"]).model) == SIZES["size12m"]
  assert _size(load_config("dmcproprio_walker_walk", ["size12m", "nature"]).model) == SIZES["size12m"]


def test_without_nature_the_2023_domain_blocks_stay():
  config = load_config("atari_pong", [])
  assert (config.model.core, config.env.atari.size, config.run.train_ratio) == ("gru", [64, 64], 64.0)


@pytest.mark.parametrize(
  "presets, message",
  [
    (["nature", "s"], "preset 's' is a 2023 model size and cannot be combined with 'nature'"),
    (["xl", "nature"], "preset 'xl' is a 2023 model size"),
    (["size12m"], "preset 'size12m' is a size of the current generation and needs 'nature'"),
    (["debug", "size1m"], "needs 'nature' (--configs=nature,size1m)"),
    (["nature_atari"], "unknown preset 'nature_atari'"),
  ],
)
def test_mixing_generations_is_a_one_line_error(presets, message):
  with pytest.raises(ConfigError, match=None) as info:
    load_config("atari_pong", presets)
  assert message in str(info.value) and "\n" not in str(info.value)


def test_domain_blocks_are_not_presets():
  presets = config_lib.available_presets()
  assert "nature" in presets and set(SIZES) <= set(presets)
  assert not [p for p in presets if p.startswith("nature_")]


def test_debug_composes_with_nature():
  config = load_config("crafter_reward", ["nature", "debug"])
  assert config.model.core == "blockgru" and config.model.deter == 32


def test_generation_specific_values_are_checked():
  with pytest.raises(ConfigError, match="need model.core=blockgru"):
    load_config(None, ["nature"], ["model.core=gru"])
  with pytest.raises(ConfigError, match="multiple of model.blocks"):
    load_config(None, ["nature"], ["model.deter=100"])
  with pytest.raises(ConfigError, match="divisible by 16"):
    load_config("atari_pong", ["nature"], ["env.atari.size=[72, 72]"])


@pytest.mark.parametrize("first, second", [([], ["nature"]), (["nature"], []), (["nature"], ["nature", "size12m"])])
def test_resuming_with_the_other_generation_is_refused(tmp_path, first, second):
  """A run's config.yaml records its generation (model.core, norm, ...): resuming it with the other
  generation's config stops with the existing one-line error, and nothing in the logdir changes."""
  from dreamer_tf.errors import UserError
  from dreamer_tf.training.run_dir import prepare_logdir

  logdir = prepare_logdir(tmp_path / "run", load_config("crafter_reward", first), "crafter_reward")
  saved = (logdir / "config.yaml").read_text()
  with pytest.raises(UserError) as info:
    prepare_logdir(logdir, load_config("crafter_reward", second), "crafter_reward")
  assert str(info.value) == (
    f"logdir {logdir} holds a run with a different model config; resume with the same "
    "--configs/--override or use another --logdir"
  )
  assert (logdir / "config.yaml").read_text() == saved
  prepare_logdir(logdir, load_config("crafter_reward", first), "crafter_reward")  # the same generation resumes


def test_precision_auto_is_bfloat16_on_accelerators_float32_on_cpu(monkeypatch):
  import tensorflow as tf

  from dreamer_tf.training.precision import resolve_precision

  assert load_config(None, ["nature"]).run.precision == "auto"
  assert load_config(None, []).run.precision == "float32"
  assert resolve_precision("auto", "tpu") == "mixed_bfloat16"
  assert resolve_precision("mixed_float16", "tpu") == "mixed_float16"
  monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
  assert resolve_precision("auto") == "float32"
  monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
  assert resolve_precision("auto") == "mixed_bfloat16"
  assert resolve_precision("float32") == "float32"


def test_replay_context_and_online_default_off():
  replay = load_config(None).replay
  assert (replay.context, replay.online) == (0, False)


@pytest.mark.parametrize(
  "overrides, keys, fix",
  [
    (["replay.context=1"], "replay.context need", "--override replay.context=0"),
    (["replay.online=true"], "replay.online need", "--override replay.online=false"),
    (["replay.context=1", "replay.online=true"], "replay.context and replay.online", "context=0 replay.online=false"),
  ],
)
def test_reverb_refuses_replay_context_and_online_in_one_line(overrides, keys, fix):
  with pytest.raises(ConfigError) as info:
    load_config(None, [], ["replay.backend=reverb", *overrides])
  message = str(info.value)
  assert keys in message and "Reverb tables" in message and fix in message and "\n" not in message


def test_replay_context_is_zero_or_one():
  with pytest.raises(ConfigError, match="replay.context must be 0 or 1"):
    load_config(None, [], ["replay.context=2"])


def test_nature_replay_is_online_with_5e6_steps_latents_in_replay_and_no_random_prefill():
  config = load_config(None, ["nature"])
  replay = config.replay
  assert (replay.capacity, replay.online, replay.context) == (5_000_000, True, 1)
  assert config.run.prefill == "policy"
  assert load_config(None).run.prefill == "random"


def test_prefill_is_random_or_policy():
  with pytest.raises(ConfigError, match="run.prefill"):
    load_config(None, [], ["run.prefill=agent"])


@pytest.mark.parametrize(
  "presets, overrides, expected",
  [
    (["debug"], [], "2023"),
    (["m"], [], "2023"),
    (["nature", "size12m"], [], "nature"),
    (["nature", "debug"], [], "nature"),
    (["nature"], ["model.optimizer=adam"], "mixed"),
    (["debug"], ["model.norm=rms"], "mixed"),
  ],
)
def test_generation_of_a_config(presets, overrides, expected):
  assert config_lib.generation(load_config("atari100k_pong", presets, overrides)) == expected


@pytest.mark.parametrize("first, second", [([], ["nature"]), (["nature"], [])])
def test_run_json_records_the_generation_and_guards_it_without_a_config_yaml(tmp_path, first, second):
  """run.json names the generation; resuming a run whose config.yaml is gone with the other generation
  stops with the same one-line error as when config.yaml is there."""
  import json

  from dreamer_tf.errors import UserError
  from dreamer_tf.training.run_dir import prepare_logdir

  config = load_config("crafter_reward", first)
  logdir = prepare_logdir(tmp_path / "run", config, "crafter_reward")
  recorded = json.loads((logdir / "run.json").read_text())
  assert recorded == {"env": "crafter_reward", "generation": "nature" if first else "2023"}
  (logdir / "config.yaml").unlink()
  with pytest.raises(UserError) as info:
    prepare_logdir(logdir, load_config("crafter_reward", second), "crafter_reward")
  assert str(info.value) == (
    f"logdir {logdir} holds a run with a different model config; resume with the same "
    "--configs/--override or use another --logdir"
  )
  assert json.loads((logdir / "run.json").read_text()) == recorded and not (logdir / "config.yaml").exists()
  prepare_logdir(logdir, config, "crafter_reward")  # The same generation resumes.
