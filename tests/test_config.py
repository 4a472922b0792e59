"""Tests of dreamer_tf.config: presets, composition, overrides and errors."""

from collections.abc import Mapping

import pytest
import yaml

from dreamer_tf import config as config_lib
from dreamer_tf.config import ConfigError, load_config
from dreamer_tf.main import resolve_config


def test_defaults_are_the_2023_paper_values():
  config = load_config()
  assert config.model.loss_scales.dyn == 0.5
  assert config.model.loss_scales.rep == 0.1
  assert config.model.free_nats == 1.0
  assert config.model.imag_horizon == 15
  assert config.model.return_lambda == 0.95
  assert config.model.actent == 3e-4
  assert abs(1 - 1 / config.model.horizon - 0.997) < 1e-5
  assert (config.model.model_opt.lr, config.model.model_opt.eps, config.model.model_opt.clip) == (1e-4, 1e-8, 1000)
  assert (config.model.actor_opt.lr, config.model.actor_opt.eps, config.model.actor_opt.clip) == (3e-5, 1e-5, 100)
  assert (config.replay.batch_size, config.replay.batch_length) == (16, 64)


@pytest.mark.parametrize(
  "env_name, preset",
  [
    ("atari_pong", "atari"),
    ("atari100k_pong", "atari100k"),
    ("dmc_walker_walk", "dmc_vision"),
    ("dmcproprio_walker_walk", "dmc_proprio"),
    ("crafter_reward", "crafter"),
    ("bsuite_catch/0", "bsuite"),
  ],
)
def test_domain_preset_is_chosen_from_the_env_name(env_name, preset):
  assert config_lib.domain_preset(env_name) == preset


def test_gym_envs_take_the_nearest_paper_block():
  assert config_lib.domain_preset("gym_CartPole-v1", has_image=False) == "dmc_proprio"
  assert config_lib.domain_preset("gym_CarRacing-v3", has_image=True) == "dmc_vision"


def test_domain_block_is_applied():
  atari = load_config("atari_pong")
  atari100k = load_config("atari100k_pong")
  assert atari.env.atari.sticky and atari.env.atari.actions == "all"
  assert not atari100k.env.atari.sticky and atari100k.env.atari.actions == "needed"
  assert atari100k.run.train_ratio == 1024


def test_presets_apply_in_order_and_overrides_last():
  config = load_config("atari_pong", ["xs", "s"])
  assert config.model.deter == 512  # s after xs wins
  config = load_config("atari_pong", ["s", "xs"], ["model.deter=128", "run.seed=7"])
  assert config.model.deter == 128 and config.model.units == 256 and config.run.seed == 7


@pytest.mark.parametrize(
  "preset, deter, units, depth, layers",
  [
    ("xs", 256, 256, 24, 1),
    ("s", 512, 512, 32, 2),
    ("m", 1024, 640, 48, 3),
    ("l", 2048, 768, 64, 4),
    ("xl", 4096, 1024, 96, 5),
  ],
)
def test_size_presets_follow_the_paper_table(preset, deter, units, depth, layers):
  model = load_config("atari_pong", [preset]).model
  assert (model.deter, model.units, model.cnn_depth, model.layers) == (deter, units, depth, layers)


def test_override_value_types_are_parsed():
  config = load_config(
    None, [], ["run.steps=1e6", "env.atari.size=[32, 32]", "run.jit_compile=true", "model.mlp_keys=^state$"]
  )
  assert config.run.steps == 1e6 and config.env.atari.size == [32, 32]
  assert config.run.jit_compile is True and config.model.mlp_keys == "^state$"


def test_integral_floats_are_accepted_for_ints():
  assert load_config(None, [], ["replay.capacity=1e5"]).replay.capacity == 100000


def test_unknown_preset_names_the_closest():
  with pytest.raises(ConfigError, match=r"unknown preset 'dbug'; did you mean 'debug'\?"):
    load_config("atari_pong", ["dbug"])


def test_unknown_key_names_the_closest():
  with pytest.raises(ConfigError, match=r"unknown config key 'model.detr'; did you mean 'model.deter'\?"):
    load_config(None, [], ["model.detr=3"])


def test_unknown_section_names_the_closest():
  with pytest.raises(ConfigError, match=r"unknown config key 'modl'; did you mean 'model'\?"):
    load_config(None, [], ["modl.deter=3"])


@pytest.mark.parametrize(
  "override, message",
  [
    ("model.deter=abc", r"model.deter must be a int like 4096, got 'abc'"),
    ("run.jit_compile=3", r"run.jit_compile must be a bool"),
    ("model.unimix=x", r"model.unimix must be a float"),
    ("env.atari.size=[64]", r"env.atari.size must be a list"),
    ("model=3", r"model is a group of keys"),
  ],
)
def test_ill_typed_values_are_rejected(override, message):
  with pytest.raises(ConfigError, match=message):
    load_config(None, [], [override])


@pytest.mark.parametrize(
  "override, message",
  [
    ("model.deter=-1", r"model.deter must be positive"),
    ("replay.batch_size=0", r"replay.batch_size must be positive"),
    ("run.train_start=-5", r"run.train_start must not be negative"),
    ("model.unimix=1.5", r"model.unimix must lie in \[0, 1\]"),
    ("run.precision=float16", r"did you mean 'float32'"),
    ("replay.capacity=10", r"replay.capacity=10 must be at least replay.batch_length=64"),
  ],
)
def test_impossible_values_are_rejected(override, message):
  with pytest.raises(ConfigError, match=message):
    load_config(None, [], [override])


def test_override_without_equals_sign_is_rejected():
  with pytest.raises(ConfigError, match=r"must have the form dotted.key=value"):
    load_config(None, [], ["model.deter"])


def test_errors_are_single_line():
  for overrides in (["model.detr=3"], ["model.deter=abc"], ["run.precision=x"]):
    with pytest.raises(ConfigError) as info:
      load_config(None, [], overrides)
    assert "\n" not in str(info.value)


def test_preset_file_path_is_accepted(tmp_path):
  path = tmp_path / "mine.yaml"
  path.write_text("model: {deter: 77}\n")
  assert load_config("atari_pong", [str(path)]).model.deter == 77
  bad = tmp_path / "bad.yaml"
  bad.write_text("model: {detr: 77}\n")
  with pytest.raises(ConfigError, match=r"preset .*bad.yaml: unknown config key 'model.detr'"):
    load_config("atari_pong", [str(bad)])


def test_config_is_immutable_and_round_trips_through_yaml(tmp_path):
  config = load_config("atari100k_pong", ["debug"])
  with pytest.raises(AttributeError):
    config.model = None
  path = config_lib.save_config(config, tmp_path)
  assert yaml.safe_load(path.read_text()) == config.to_dict()
  updated = config.update({"model.deter": 64})
  assert updated.model.deter == 64 and config.model.deter != 64


def test_every_preset_file_loads():
  for name in config_lib.available_presets():
    # The current generation's sizes need `nature` (tests/test_config_nature.py).
    load_config("atari_pong", ["nature", name] if name in config_lib.NATURE_SIZES else [name])


# --- Domain presets: the 2023 code's blocks (dreamerv3 1.5.0 configs.yaml) ---------------------------

SIZE_KEYS = ("deter", "cnn_depth", "units", "layers")


@pytest.mark.parametrize(
  "env_name, size, deter",
  [
    ("atari_pong", "xl", 4096),
    ("atari100k_pong", "s", 512),
    ("dmc_walker_walk", "s", 512),
    ("dmcproprio_cartpole_balance", "s", 512),
    ("crafter_reward", "xl", 4096),
    ("bsuite_catch/0", "s", 512),
  ],
)
def test_domain_presets_use_the_2023_model_size(env_name, size, deter):
  model = resolve_config(env_name, [], []).model
  preset = load_config(None, [size]).model
  assert {k: model[k] for k in SIZE_KEYS} == {k: preset[k] for k in SIZE_KEYS}
  assert model.deter == deter
  # The vector encoder and decoder keep the 2023 code's 5 x 1024 in every domain.
  assert (model.vector_layers, model.vector_units) == (5, 1024)


def test_size_presets_apply_after_the_domain_preset_and_leave_the_vector_mlps():
  model = resolve_config("dmcproprio_cartpole_balance", ["xs"], []).model
  assert (model.deter, model.units, model.cnn_depth, model.layers) == (256, 256, 24, 1)
  assert (model.vector_layers, model.vector_units) == (5, 1024)
  model = resolve_config("dmcproprio_cartpole_balance", ["xs"], ["model.vector_units=64"]).model
  assert model.vector_units == 64


def test_debug_preset_shrinks_the_vector_mlps():
  model = load_config("dmcproprio_cartpole_balance", ["debug"]).model
  assert (model.vector_layers, model.vector_units) == (1, model.units)


def _flat(config, prefix=""):
  out = {}
  for key, value in config.items():
    if isinstance(value, Mapping):
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


COMMON = {"replay.batch_size": 16, "replay.batch_length": 64, "replay.capacity": 1_000_000, "run.precision": "float32"}
ATARI = {"env.atari.size": [64, 64], "env.atari.repeat": 4, "env.atari.gray": False, "env.atari.lives": "unused"}
DMC = {"env.dmc.size": [64, 64], "env.dmc.repeat": 2, "env.dmc.camera": -1, "run.envs": 4, "run.train_ratio": 512}
DOMAIN_SETTINGS = {
  "atari_pong": {
    **ATARI,
    "run.steps": 5.5e7,
    "run.envs": 8,
    "run.train_ratio": 64,
    "run.eval_episodes": 10,
    "env.atari.sticky": True,
    "env.atari.sticky_prob": 0.25,
    "env.atari.actions": "all",
    "env.atari.noops": 0,
    "env.atari.length": 108000,
  },
  "atari100k_pong": {
    **ATARI,
    "run.envs": 1,
    "run.train_ratio": 1024,
    "run.eval_every": 100_000,
    "run.eval_episodes": 100,
    "env.atari.sticky": False,
    "env.atari.actions": "needed",
    "env.atari.noops": 30,
    "env.atari.length": 108000,
  },
  "dmc_walker_walk": {
    **DMC,
    "env.dmc.image": True,
    "env.dmc.proprio": False,
    "model.cnn_keys": "image",
    "model.mlp_keys": "$^",
  },
  "dmcproprio_cartpole_balance": {
    **DMC,
    "env.dmc.image": False,
    "env.dmc.proprio": True,
    "model.cnn_keys": "$^",
    "model.mlp_keys": ".*",
  },
  "crafter_reward": {
    "run.envs": 1,
    "run.train_ratio": 512,
    "env.crafter.size": [64, 64],
    "env.crafter.length": 10000,
  },
  "bsuite_catch/0": {"run.envs": 1, "run.train_ratio": 1024, "run.parallel_envs": False},
}


@pytest.mark.parametrize("env_name", sorted(DOMAIN_SETTINGS))
def test_domain_presets_carry_the_2023_settings(env_name):
  resolved = _flat(resolve_config(env_name, [], []))
  expected = {**COMMON, **DOMAIN_SETTINGS[env_name]}
  assert {k: resolved[k] for k in expected} == expected


def test_a_run_saved_before_the_vector_keys_loads_with_the_model_it_was_trained_with(tmp_path):
  """Runs written before model.vector_layers/units existed used model.layers/units for the vector MLPs."""
  data = resolve_config("dmcproprio_cartpole_balance", ["debug"], ["model.layers=2", "model.units=48"]).to_dict()
  del data["model"]["vector_layers"], data["model"]["vector_units"]
  del data["run"]["seed"]  # A key the run lacks for another reason takes its default.
  path = tmp_path / "config.yaml"
  path.write_text(yaml.safe_dump(data))
  config = config_lib.load_saved_config(path)
  assert (config.model.vector_layers, config.model.vector_units) == (2, 48)
  assert config.run.seed == load_config().run.seed


def test_a_saved_config_with_an_unknown_key_is_one_line(tmp_path):
  path = tmp_path / "config.yaml"
  path.write_text(yaml.safe_dump({"model": {"deterr": 8}}))
  with pytest.raises(ConfigError, match=r"unknown config key 'model.deterr'; did you mean 'model.deter'"):
    config_lib.load_saved_config(path)
