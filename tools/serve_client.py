"""Drives an environment with a DreamerV3 policy served by TF Serving, over its REST API.

Usage (with ``tensorflow_model_server --rest_api_port=8501 --model_name=pong
--model_base_path=$PWD/saved_models/pong`` running, see docs/serving.md)::

  python tools/serve_client.py --url=http://localhost:8501 --model=pong --steps=1000

The environment and its settings come from the model's ``get_metadata`` signature unless
``--env`` is given. Each step sends one ``action`` request in TF Serving's columnar format::

  {"signature_name": "action",
   "inputs": {"image": [[[[0, 0, 0], ...]]], "is_first": [true],
              "deter": [[...]], "stoch": [[[...]]], "prev_action": [[...]],
              "greedy": true, "seed": -1}}

and reads ``{"outputs": {"action": [3], "deter": ..., "stoch": ..., "prev_action": ...}}``. The
policy state is the client's to carry: the returned ``deter``, ``stoch`` and ``prev_action`` go
into the next request, starting from the zero state of ``get_initial_state`` with
``is_first=true`` on the first step of each episode. The request/response conversion uses only
the standard library and NumPy; TensorFlow is not needed on the client side.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

import numpy as np

STATE_KEYS = ("deter", "stoch", "prev_action")


class ServingError(RuntimeError):
  """The server rejected a request; the message is the server's ``error`` text."""


def encode_request(signature_name: str, inputs: Mapping[str, object]) -> bytes:
  """A TF Serving REST predict request body in the columnar (``inputs``) format."""
  body = {
    "signature_name": signature_name,
    "inputs": {k: np.asarray(v).tolist() for k, v in inputs.items()},
  }
  return json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")


def decode_response(body: bytes | str | Mapping, dtypes: Mapping[str, str] | None = None) -> dict:
  """Parses a predict response into ``{name: np.ndarray}``.

  Args:
    body: The response body (JSON text or already parsed).
    dtypes: Optional ``{output: dtype name}``; outputs are converted to these dtypes. A
      single-output response (``{"outputs": value}``) takes the one name in ``dtypes``.

  Raises:
    ServingError: the body holds an ``error``.
  """
  data = json.loads(body) if isinstance(body, (bytes, str)) else dict(body)
  if "error" in data:
    raise ServingError(str(data["error"]))
  if "outputs" not in data:
    raise ServingError(f"response has no 'outputs': {str(data)[:200]}")
  outputs = data["outputs"]
  dtypes = dict(dtypes or {})
  if not isinstance(outputs, dict):
    if len(dtypes) != 1:
      raise ServingError("single-output response, but the output's name is unknown")
    outputs = {next(iter(dtypes)): outputs}
  result = {}
  for name, value in outputs.items():
    dtype = dtypes.get(name)
    if dtype == "string":
      result[name] = value if isinstance(value, str) else np.asarray(value, dtype=object)
    else:
      result[name] = np.asarray(value, dtype=dtype)
  return result


class PolicySpec:
  """The exported policy's input specs, from its ``get_metadata`` signature."""

  def __init__(self, metadata: Mapping):
    self.metadata = dict(metadata)
    self.observation_spec = dict(metadata["observation_spec"])
    self.action_spec = dict(metadata["action_spec"])
    self.state_spec = dict(metadata["policy_state_spec"])
    self.env_name = metadata["env_name"]

  @property
  def action_dtypes(self) -> dict:
    return {"action": self.action_spec["dtype"], **{k: "float32" for k in STATE_KEYS}}

  def check_inputs(self, obs: Mapping, is_first, state: Mapping) -> dict:
    """Converts and checks one batch of inputs; a ValueError names the first bad input."""
    inputs = {}
    for key, spec in self.observation_spec.items():
      if key not in obs:
        raise ValueError(f"observation key '{key}' is missing (the policy needs {sorted(self.observation_spec)})")
      inputs[key] = _check(key, obs[key], spec["dtype"], spec["shape"])
    inputs["is_first"] = _check("is_first", is_first, "bool", [])
    for key, spec in self.state_spec.items():
      if key not in state:
        raise ValueError(f"policy state '{key}' is missing; start from initial_state()")
      inputs[key] = _check(key, state[key], "float32", spec["shape"])
    batch = {k: v.shape[0] for k, v in inputs.items()}
    if len(set(batch.values())) > 1:
      raise ValueError(f"inputs have different batch sizes: {batch}")
    return inputs


def _check(name: str, value, dtype: str, dims) -> np.ndarray:
  array = np.asarray(value)
  kind = np.dtype(dtype).kind
  if array.dtype.kind != kind and not (kind == "f" and array.dtype.kind in "iu"):
    raise ValueError(f"input '{name}' must be {dtype}, got {array.dtype}")
  if array.dtype.kind in "iu" and array.size and kind in "iu":
    info = np.iinfo(dtype)
    if array.min() < info.min or array.max() > info.max:
      raise ValueError(f"input '{name}' has values outside the {dtype} range")
  if array.ndim != len(dims) + 1 or list(array.shape[1:]) != list(dims):
    want = "[batch" + "".join(f", {d}" for d in dims) + "]"
    raise ValueError(f"input '{name}' must have shape {want}, got {list(array.shape)}")
  return array.astype(dtype, copy=False)


class RestPolicyClient:
  """Calls an exported DreamerV3 policy through TF Serving's REST predict API.

  Args:
    url: The server, e.g. ``http://localhost:8501``.
    model: The model name from TF Serving's model_config.
    version: A model version to pin (default: the one TF Serving serves).
    timeout: Seconds per request.
  """

  def __init__(self, url: str, model: str, version: int | None = None, timeout: float = 30.0):
    path = f"/v1/models/{model}" + (f"/versions/{int(version)}" if version is not None else "")
    self.endpoint = url.rstrip("/") + path + ":predict"
    self.timeout = timeout
    self._spec = None

  def predict(self, signature_name: str, inputs: Mapping, dtypes: Mapping | None = None) -> dict:
    """One predict call; raises ServingError with the server's message on failure."""
    request = urllib.request.Request(
      self.endpoint, data=encode_request(signature_name, inputs), headers={"Content-Type": "application/json"}
    )
    try:
      with urllib.request.urlopen(request, timeout=self.timeout) as response:
        body = response.read()
    except urllib.error.HTTPError as e:
      body = e.read()
      try:
        message = json.loads(body).get("error", body.decode("utf-8", "replace"))
      except ValueError:
        message = body.decode("utf-8", "replace")
      raise ServingError(f"HTTP {e.code} from {self.endpoint}: {message}") from None
    except urllib.error.URLError as e:
      raise ServingError(f"cannot reach {self.endpoint}: {e.reason}") from None
    return decode_response(body, dtypes)

  @property
  def spec(self) -> PolicySpec:
    """The policy's specs (fetched once through ``get_metadata``)."""
    if self._spec is None:
      out = self.predict("get_metadata", {"request": 0}, {"metadata": "string", "config": "string"})
      metadata = json.loads(out["metadata"])
      metadata["config"] = out["config"]
      self._spec = PolicySpec(metadata)
    return self._spec

  def initial_state(self, batch_size: int) -> dict:
    """The zero policy state for ``batch_size`` episodes (``get_initial_state``)."""
    return self.predict("get_initial_state", {"batch_size": int(batch_size)}, {k: "float32" for k in STATE_KEYS})

  def action(self, obs: Mapping, is_first, state: Mapping, greedy: bool = True, seed: int = -1):
    """One policy step for a batch: returns ``(action, new_state)``."""
    inputs = self.spec.check_inputs(obs, is_first, state)
    inputs.update(greedy=bool(greedy), seed=int(seed))
    out = self.predict("action", inputs, self.spec.action_dtypes)
    return out["action"], {k: out[k] for k in STATE_KEYS}


class PolicySession:
  """Carries the policy state of a batch of episodes between calls.

  Args:
    client: A :class:`RestPolicyClient` (or anything with ``initial_state`` and ``action``).
    batch_size: Episodes stepped together.
    greedy: Take the actor's mode (True) or sample.
    seed: None: the server draws a random seed per call; an int makes the run reproducible
      (call ``t`` uses seed ``(seed << 32) + t``).
  """

  def __init__(self, client, batch_size: int = 1, greedy: bool = True, seed: int | None = None):
    self.client, self.batch_size, self.greedy, self.seed = client, batch_size, greedy, seed
    self.calls = 0
    self.state = client.initial_state(batch_size)

  def step(self, obs: Mapping, is_first) -> np.ndarray:
    seed = -1 if self.seed is None else (int(self.seed) << 32) + self.calls
    action, self.state = self.client.action(obs, is_first, self.state, self.greedy, seed)
    self.calls += 1
    return action


def run_episodes(env, session: PolicySession, steps: int) -> list[float]:
  """Steps an unbatched TF-Agents PyEnvironment; returns the returns of finished episodes."""
  returns, episode_return = [], 0.0
  time_step = env.reset()
  for _ in range(steps):
    obs = {k: np.asarray(v)[None] for k, v in time_step.observation.items() if not k.startswith("log_")}
    action = session.step(obs, np.array([time_step.is_first()]))
    time_step = env.step(action[0])
    episode_return += float(time_step.reward)
    if time_step.is_last():
      returns.append(episode_return)
      episode_return = 0.0
  return returns


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--url", default="http://localhost:8501", help="TF Serving's REST address.")
  parser.add_argument("--model", required=True, help="The model name in TF Serving's model_config.")
  parser.add_argument("--version", type=int, default=None, help="Pin a model version.")
  parser.add_argument("--env", default=None, help="Environment (default: the one the policy was trained on).")
  parser.add_argument("--steps", type=int, default=1000, help="Environment steps to run.")
  parser.add_argument("--sample", action="store_true", help="Sample actions instead of the greedy mode.")
  parser.add_argument("--seed", type=int, default=None, help="Seed for reproducible requests and the env.")
  return parser.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)
  client = RestPolicyClient(args.url, args.model, args.version)
  try:
    spec = client.spec
    import yaml

    from dreamer_tf.config import Config
    from dreamer_tf.envs import make_env

    env = make_env(args.env or spec.env_name, Config(yaml.safe_load(spec.metadata["config"])), args.seed or 0)
    session = PolicySession(client, 1, greedy=not args.sample, seed=args.seed)
    returns = run_episodes(env, session, args.steps)
  except ServingError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  mean = sum(returns) / len(returns) if returns else float("nan")
  print(json.dumps({"steps": args.steps, "episodes": len(returns), "mean_return": mean, "returns": returns}))
  return 0


if __name__ == "__main__":
  sys.exit(main())
