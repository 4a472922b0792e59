"""Configuration: named YAML presets, composition, overrides and validation.

A configuration is built in this order, each step overriding the previous one:

1. ``configs/defaults.yaml``: every key that exists, with the 2023 paper values.
2. The domain preset chosen from the environment name (``atari``, ``atari100k``,
   ``dmc_vision``, ``dmc_proprio``, ``crafter``, ``bsuite``; see
   :func:`domain_preset`).
3. The presets named by ``--configs=a,b`` in order (sizes ``xs`` .. ``xl``,
   ``debug``, or any YAML file in ``configs/``).

``nature`` in ``--configs`` selects the current generation (arXiv 2301.04104v2): ``nature.yaml``
comes first, then the current code's block for the domain (``nature_<domain>.yaml`` instead of the
2023 domain preset), then the other presets in order; its sizes are ``size1m`` .. ``size400m``.
Mixing the generations' sizes stops with a one-line :class:`ConfigError`.
4. ``--override=dotted.key=value`` flags in order.

Presets and overrides may only set keys that exist in the defaults and only to
a value of the same type; anything else raises :class:`ConfigError` with a
one-line message naming the offending key and the closest valid one.
"""

from __future__ import annotations

import copy
import difflib
import os
import pathlib
from collections.abc import Mapping

import yaml

from dreamer_tf.errors import UserError

# The presets live in the repository's top-level configs/; dreamer_tf/configs is a link to it, so
# a checkout, an editable install and a wheel (whose build copies the linked files into the
# package, see setup.py) all read them from the same place next to this module.
CONFIG_DIR = pathlib.Path(__file__).resolve().parent / "configs"

# Environment-name prefix -> domain preset. Longest prefix wins.
DOMAIN_PRESETS = {
  "atari100k_": "atari100k",
  "atari_": "atari",
  "dmcproprio_": "dmc_proprio",
  "dmc_": "dmc_vision",
  "crafter_": "crafter",
  "bsuite_": "bsuite",
  "gym_": None,  # Chosen from the observation space: see domain_preset().
}


# The current generation (arXiv 2301.04104v2): `--configs=nature` selects it, its model sizes are
# these presets, and its domain blocks are configs/nature_<domain>.yaml (applied with it, not by name).
NATURE = "nature"
NATURE_SIZES = ("size1m", "size12m", "size25m", "size50m", "size100m", "size200m", "size400m")
SIZES_2023 = ("xs", "s", "m", "l", "xl")
NATURE_DOMAIN_PREFIX = "nature_"
# The model keys that switch the layers and the update between the generations: their 2023 values
# (configs/defaults.yaml) and the current generation's (configs/nature.yaml).
GENERATION_SWITCHES = {
  "core": ("gru", "blockgru"),
  "norm": ("layer", "rms"),
  "cnn": ("strided", "pooling"),
  "twohot": ("symlog", "symexp"),
  "optimizer": ("adam", "laprop"),
  "contdisc": (False, True),
}
GENERATION_2023 = "2023"
MIXED = "mixed"


class ConfigError(UserError, ValueError):
  """A configuration problem, reported to the user as one line."""


def available_presets() -> list[str]:
  """Names of the presets in ``configs/`` (without the ``.yaml`` suffix)."""
  return sorted(
    p.stem for p in CONFIG_DIR.glob("*.yaml") if p.stem != "defaults" and not p.stem.startswith(NATURE_DOMAIN_PREFIX)
  )


def domain_preset(env_name: str, has_image: bool | None = None) -> str | None:
  """Returns the domain preset for an environment name.

  Environments without a paper block (``gym_``) take the block of the nearest
  paper domain: image observations the visual-control block (``dmc_vision``),
  vector observations the proprioceptive-control block (``dmc_proprio``).

  Args:
    env_name: The ``--env`` value, e.g. ``atari_pong``.
    has_image: For ``gym_`` environments, whether the observation has an image.

  Returns:
    The preset name, or None when the suite has no block.
  """
  for prefix in sorted(DOMAIN_PRESETS, key=len, reverse=True):
    if env_name.startswith(prefix):
      preset = DOMAIN_PRESETS[prefix]
      if preset is None and has_image is not None:
        preset = "dmc_vision" if has_image else "dmc_proprio"
      return preset
  return None


def _closest(word: str, options) -> str:
  match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.0)
  return match[0] if match else ""


def _read_yaml(path: pathlib.Path) -> dict:
  try:
    with open(path) as f:
      data = yaml.safe_load(f) or {}
  except yaml.YAMLError as e:
    raise ConfigError(f"preset file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
  if not isinstance(data, dict):
    raise ConfigError(f"preset file {path} must hold a mapping of keys, not {type(data).__name__}")
  return data


def _type_name(value) -> str:
  return {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "mapping"}.get(
    type(value), type(value).__name__
  )


def _coerce(key: str, default, value, source: str):
  """Checks that ``value`` may replace ``default`` and converts ints/floats."""
  if isinstance(default, bool):
    if isinstance(value, bool):
      return value
  elif isinstance(default, int):
    if isinstance(value, int) and not isinstance(value, bool):
      return value
    if isinstance(value, float) and value.is_integer():
      return int(value)
  elif isinstance(default, float):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      return float(value)
  elif isinstance(default, str):
    if isinstance(value, str):
      return value
  elif isinstance(default, list):
    if isinstance(value, list) and len(value) == len(default):
      return [_coerce(f"{key}[{i}]", d, v, source) for i, (d, v) in enumerate(zip(default, value))]
  raise ConfigError(f"{source}: {key} must be a {_type_name(default)} like {default!r}, got {value!r}")


def _merge(base: dict, update: Mapping, source: str, prefix: str = "") -> None:
  for key, value in update.items():
    dotted = f"{prefix}{key}"
    if key not in base:
      valid = [f"{prefix}{k}" for k in base]
      raise ConfigError(f"{source}: unknown config key '{dotted}'; did you mean '{_closest(dotted, valid)}'?")
    if isinstance(base[key], dict):
      if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: {dotted} is a group of keys and needs a mapping, got {value!r}")
      if base[key] or not value:
        _merge(base[key], value, source, dotted + ".")
      else:  # An empty group (e.g. env.bsuite) accepts free-form keys.
        base[key] = dict(value)
    else:
      base[key] = _coerce(dotted, base[key], value, source)


class Config(Mapping):
  """An immutable nested configuration with attribute access.

  >>> config = load_config(presets=["debug"])
  >>> config.model.deter
  32
  """

  def __init__(self, data: Mapping):
    object.__setattr__(self, "_data", {k: Config(v) if isinstance(v, Mapping) else v for k, v in data.items()})

  def __getattr__(self, name):
    try:
      return self._data[name]
    except KeyError:
      raise AttributeError(f"config has no key '{name}'") from None

  def __setattr__(self, name, value):
    raise AttributeError("Config is immutable; use config.update({...})")

  def __getitem__(self, key):
    return self._data[key]

  def __iter__(self):
    return iter(self._data)

  def __len__(self):
    return len(self._data)

  def __repr__(self):
    return f"Config({self.to_dict()!r})"

  def to_dict(self) -> dict:
    return {k: v.to_dict() if isinstance(v, Config) else copy.deepcopy(v) for k, v in self._data.items()}

  def update(self, changes: Mapping, source: str = "update") -> Config:
    """Returns a copy with ``changes`` (nested or dotted keys) applied and validated."""
    data = self.to_dict()
    _merge(data, _undot(changes), source)
    result = Config(data)
    validate(result)
    return result

  def to_yaml(self) -> str:
    return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _undot(changes: Mapping) -> dict:
  nested: dict = {}
  for key, value in changes.items():
    if isinstance(value, Mapping):
      value = _undot(value)
    parts = key.split(".")
    node = nested
    for part in parts[:-1]:
      node = node.setdefault(part, {})
    node[parts[-1]] = value
  return nested


def parse_override(text: str, defaults: Mapping) -> dict:
  """Parses ``dotted.key=value`` into a nested dict; values are YAML scalars."""
  if "=" not in text:
    raise ConfigError(f"--override={text!r} must have the form dotted.key=value, e.g. run.seed=1")
  key, raw = text.split("=", 1)
  key = key.strip()
  node = defaults
  for part in key.split(".")[:-1]:
    node = node.get(part, {}) if isinstance(node, Mapping) else {}
  leaf = node.get(key.split(".")[-1]) if isinstance(node, Mapping) else None
  if isinstance(leaf, str):
    value = raw
  else:
    try:
      value = yaml.safe_load(raw)
    except yaml.YAMLError:
      value = raw
    if isinstance(value, str):
      try:  # YAML 1.1 reads '1e6' as a string; users mean a number.
        value = float(value)
      except ValueError:
        pass
  return _undot({key: value})


def load_config(env_name: str | None = None, presets=(), overrides=(), has_image: bool | None = None) -> Config:
  """Builds and validates the configuration.

  Args:
    env_name: The environment name; selects the domain preset.
    presets: Preset names from ``configs/`` applied in order after the domain preset.
    overrides: ``dotted.key=value`` strings applied last.
    has_image: For ``gym_`` environments, whether the observation has an image.

  Returns:
    The resolved :class:`Config`.

  Raises:
    ConfigError: on an unknown preset or key, or an ill-typed or impossible value.
  """
  data = _read_yaml(CONFIG_DIR / "defaults.yaml")
  user = [p.strip() for p in presets if p and p.strip()]
  nature = NATURE in user
  _check_generation(user, nature)
  names = [NATURE] if nature else []
  if env_name:
    domain = domain_preset(env_name, has_image)
    if nature and domain is None and env_name.startswith("procgen_"):
      domain = "procgen"  # A block of the current code only.
    if domain and nature:
      names.append(NATURE_DOMAIN_PREFIX + domain)
    elif domain:
      names.append(domain)
  names += [name for name in user if name != NATURE]
  valid = available_presets()
  for name in names:
    if name.startswith(NATURE_DOMAIN_PREFIX) and name not in user and (CONFIG_DIR / f"{name}.yaml").is_file():
      _merge(data, _read_yaml(CONFIG_DIR / f"{name}.yaml"), f"preset {name}")
      continue
    path = pathlib.Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
      _merge(data, _read_yaml(path), f"preset {name}")
      continue
    if name not in valid:
      raise ConfigError(f"unknown preset '{name}'; did you mean '{_closest(name, valid)}'? Presets: {', '.join(valid)}")
    _merge(data, _read_yaml(CONFIG_DIR / f"{name}.yaml"), f"preset {name}")
  for text in overrides:
    _merge(data, parse_override(text, data), f"--override={text}")
  config = Config(data)
  validate(config)
  return config


def generation(config: Mapping) -> str:
  """The generation a resolved config builds, from its :data:`GENERATION_SWITCHES`.

  A run records it in ``run.json`` and an export in its metadata (the config itself holds the
  switches, which is what a resume compares).

  Returns:
    ``'2023'`` when every switch has its 2023 value, ``'nature'`` (the current generation,
    ``--configs=nature``) when every switch has the current value, else ``'mixed'`` (some switches
    overridden).
  """
  model = config["model"]
  values = tuple(model[key] for key in GENERATION_SWITCHES)
  if values == tuple(old for old, _ in GENERATION_SWITCHES.values()):
    return GENERATION_2023
  if values == tuple(new for _, new in GENERATION_SWITCHES.values()):
    return NATURE
  return MIXED


def _check_generation(presets, nature: bool) -> None:
  """Model sizes belong to one generation: ``sizeNm`` needs ``nature``, ``xs`` .. ``xl`` exclude it."""
  for name in presets:
    if nature and name in SIZES_2023:
      raise ConfigError(
        f"preset '{name}' is a 2023 model size and cannot be combined with '{NATURE}'; "
        f"the current generation's sizes are {', '.join(NATURE_SIZES)}"
      )
    if not nature and name in NATURE_SIZES:
      raise ConfigError(
        f"preset '{name}' is a size of the current generation and needs '{NATURE}' (--configs={NATURE},{name}); "
        f"the 2023 sizes are {', '.join(SIZES_2023)}"
      )


_CHOICES = {
  "run.precision": ("float32", "mixed_float16", "mixed_bfloat16", "auto"),
  "run.prefill": ("random", "policy"),
  "run.strategy": ("default", "mirrored", "multi_worker", "tpu"),
  "replay.backend": ("local", "reverb"),
  "env.atari.actions": ("all", "needed"),
  "env.atari.lives": ("unused", "discount", "reset"),
  "model.initial": ("learned", "zeros"),
  "model.actor_grad_disc": ("reinforce", "backprop"),
  "model.actor_grad_cont": ("reinforce", "backprop"),
  "model.core": ("gru", "blockgru"),
  "model.norm": ("layer", "rms"),
  "model.cnn": ("strided", "pooling"),
  "model.twohot": ("symlog", "symexp"),
  "model.optimizer": ("adam", "laprop"),
}

_POSITIVE = (
  "run.envs",
  "run.logical_cpus",
  "run.train_ratio",
  "replay.capacity",
  "replay.batch_size",
  "replay.batch_length",
  "model.deter",
  "model.units",
  "model.layers",
  "model.vector_layers",
  "model.vector_units",
  "model.cnn_depth",
  "model.stoch",
  "model.classes",
  "model.bins",
  "model.imag_horizon",
  "model.horizon",
  "model.minres",
  "env.atari.repeat",
  "env.dmc.repeat",
  "run.eval_episodes",
  "run.checkpoint_every_secs",
  "run.log_every_secs",
  "model.slow_critic_update",
  "model.blocks",
  "model.post_layers",
  "model.bspace",
)
_NON_NEGATIVE = (
  "run.steps",
  "run.train_start",
  "run.eval_every",
  "run.export_every",
  "run.video_every",
  "env.atari.noops",
  "env.atari.length",
  "model.free_nats",
  "model.actent",
  "run.max_nonfinite_skips",
  "replay.context",
  "model.prior_layers",
  "model.dyn_layers",
  "model.head_layers",
  "model.actor_outscale",
)
_UNIT_INTERVAL = (
  "model.unimix",
  "model.actor_unimix",
  "model.return_lambda",
  "model.slow_critic_fraction",
  "model.retnorm.decay",
)


def _get(config: Mapping, dotted: str):
  node = config
  for part in dotted.split("."):
    node = node[part]
  return node


def validate(config: Config) -> None:
  """Rejects impossible values with a one-line :class:`ConfigError`."""
  for key, choices in _CHOICES.items():
    value = _get(config, key)
    if value not in choices:
      raise ConfigError(
        f"{key}={value!r} is not valid; did you mean '{_closest(str(value), choices)}'? Choices: {', '.join(choices)}"
      )
  for key in _POSITIVE:
    if _get(config, key) <= 0:
      raise ConfigError(f"{key} must be positive, got {_get(config, key)!r}")
  for key in _NON_NEGATIVE:
    if _get(config, key) < 0:
      raise ConfigError(f"{key} must not be negative, got {_get(config, key)!r}")
  for key in _UNIT_INTERVAL:
    if not 0.0 <= _get(config, key) <= 1.0:
      raise ConfigError(f"{key} must lie in [0, 1], got {_get(config, key)!r}")
  for key in ("env.atari.size", "env.dmc.size", "env.crafter.size", "env.gym.size"):
    if min(_get(config, key)) <= 0:
      raise ConfigError(f"{key} must hold positive sizes, got {_get(config, key)!r}")
  if config.replay.capacity < config.replay.batch_length:
    raise ConfigError(
      f"replay.capacity={config.replay.capacity} must be at least replay.batch_length={config.replay.batch_length}"
    )
  _check_replay_generation(config.replay)
  model = config.model
  if model.core == "gru" and (model.prior_layers, model.post_layers) != (1, 1):
    raise ConfigError(
      f"model.prior_layers={model.prior_layers} and model.post_layers={model.post_layers} need "
      "model.core=blockgru; the 2023 GRU RSSM has one layer each"
    )
  if model.core == "blockgru" and model.deter % model.blocks:
    raise ConfigError(f"model.deter={model.deter} must be a multiple of model.blocks={model.blocks}")
  size = config.env.atari.size
  if model.cnn == "strided" and (size[0] != size[1] or size[0] & (size[0] - 1)):
    raise ConfigError(f"env.atari.size must be square with a power-of-two side for the CNN, got {size}")
  if model.cnn == "pooling" and (size[0] != size[1] or size[0] % 16):
    raise ConfigError(f"env.atari.size must be square with a side divisible by 16 for the pooling CNN, got {size}")


def _check_replay_generation(replay: Mapping) -> None:
  """The current generation's replay keys: ``replay.context`` (0 or 1) and ``replay.online``, local replay only."""
  if replay.context not in (0, 1):
    raise ConfigError(f"replay.context must be 0 or 1 (latent steps before each window), got {replay.context!r}")
  if replay.backend == "reverb" and (replay.context or replay.online):
    keys = [k for k, on in (("replay.context", replay.context), ("replay.online", replay.online)) if on]
    fix = " ".join(f"{k}={'0' if k == 'replay.context' else 'false'}" for k in keys)
    raise ConfigError(
      f"{' and '.join(keys)} need the local replay: the Reverb tables neither keep per-step latents that the "
      f"learner writes back nor queue fresh windows (docs/reverb.md); use --replay=local or --override {fix}"
    )


# Model keys added to the defaults after runs may have been written, with the key whose value
# rebuilds such a run as it was trained (before model.vector_layers/vector_units existed, the vector
# encoder and decoder used model.layers/units). Other keys a saved config lacks take their defaults.
_MODEL_KEYS_ADDED_SINCE = {"vector_layers": "layers", "vector_units": "units"}


def load_saved_config(path: str | os.PathLike) -> Config:
  """Reads the ``config.yaml`` of a run, also one written before keys were added to the defaults.

  Args:
    path: A run's ``<logdir>/config.yaml``.

  Returns:
    The validated :class:`Config` the run was trained with.

  Raises:
    ConfigError: an unreadable file, or a key this version does not know.
  """
  saved = _read_yaml(pathlib.Path(path))
  model = saved.get("model")
  if isinstance(model, dict):
    for added, source in _MODEL_KEYS_ADDED_SINCE.items():
      if added not in model and source in model:
        model[added] = model[source]
  data = _read_yaml(CONFIG_DIR / "defaults.yaml")
  _merge(data, saved, str(path))
  config = Config(data)
  validate(config)
  return config


def save_config(config: Config, logdir: str | os.PathLike) -> pathlib.Path:
  """Writes the resolved config to ``<logdir>/config.yaml`` atomically."""
  path = pathlib.Path(logdir) / "config.yaml"
  tmp = path.with_suffix(".yaml.tmp")
  tmp.write_text(config.to_yaml())
  os.replace(tmp, path)
  return path
