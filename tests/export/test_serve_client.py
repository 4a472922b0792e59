"""Tests for tools/serve_client.py against a local stand-in speaking TF Serving's REST protocol."""

import importlib.util
import json

import numpy as np
import pytest
import tensorflow as tf
from export_helpers import ENV, REPO, TRAIN_STEP
from standin_server import StandInModelServer

from dreamer_tf.envs import make_env

# The stand-in's error path and the gRPC request loop do not depend on the generation (conftest.py).
ONLY_2023 = pytest.mark.parametrize("generation", ["2023"], indirect=True)

_spec = importlib.util.spec_from_file_location("dreamer_tools_serve_client", REPO / "tools" / "serve_client.py")
serve_client = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(serve_client)

METADATA = {
  "env_name": ENV,
  "observation_spec": {"image": {"dtype": "uint8", "shape": [2, 2, 3]}, "speed": {"dtype": "float32", "shape": []}},
  "action_spec": {"dtype": "int32", "shape": [], "discrete": True},
  "policy_state_spec": {
    "deter": {"dtype": "float32", "shape": [3]},
    "stoch": {"dtype": "float32", "shape": [2, 2]},
    "prev_action": {"dtype": "float32", "shape": [4]},
  },
}


def _state(batch):
  return {"deter": np.zeros([batch, 3]), "stoch": np.zeros([batch, 2, 2]), "prev_action": np.zeros([batch, 4])}


def test_request_encoding_is_tf_serving_columnar_json():
  spec = serve_client.PolicySpec(METADATA)
  obs = {"image": np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3), "speed": np.array([0.5], np.float32)}
  inputs = spec.check_inputs(obs, [True], _state(1))
  inputs.update(greedy=True, seed=-1)
  body = json.loads(serve_client.encode_request("action", inputs))
  assert body["signature_name"] == "action"
  assert body["inputs"]["image"] == [[[[0, 1, 2], [3, 4, 5]], [[6, 7, 8], [9, 10, 11]]]]
  assert body["inputs"]["speed"] == [0.5]
  assert body["inputs"]["is_first"] == [True] and body["inputs"]["greedy"] is True and body["inputs"]["seed"] == -1
  assert body["inputs"]["stoch"] == [[[0.0, 0.0], [0.0, 0.0]]]
  assert inputs["deter"].dtype == np.float32  # float64 state converted to the signature's float32.


def test_response_decoding():
  body = json.dumps({"outputs": {"action": [2, 0], "deter": [[0.5, 1.0, 2.0]] * 2}})
  out = serve_client.decode_response(body, {"action": "int32", "deter": "float32"})
  assert out["action"].dtype == np.int32 and out["action"].tolist() == [2, 0]
  assert out["deter"].dtype == np.float32 and out["deter"].shape == (2, 3)
  single = serve_client.decode_response('{"outputs": [[1.5]]}', {"value": "float32"})
  assert single["value"].shape == (1, 1)
  with pytest.raises(serve_client.ServingError, match="input deter must have"):
    serve_client.decode_response('{"error": "input deter must have shape [batch, 3]"}')


@pytest.mark.parametrize(
  "change,message",
  [
    (lambda o, s: o.pop("image"), "observation key 'image' is missing"),
    (lambda o, s: o.update(image=o["image"].astype(np.float32)), "input 'image' must be uint8"),
    (lambda o, s: o.update(image=np.zeros([1, 2, 2], np.uint8)), "input 'image' must have shape [batch, 2, 2, 3]"),
    (lambda o, s: s.update(deter=np.zeros([1, 5])), "input 'deter' must have shape [batch, 3]"),
    (lambda o, s: s.pop("stoch"), "policy state 'stoch' is missing"),
    (lambda o, s: s.update(prev_action=np.zeros([2, 4])), "different batch sizes"),
  ],
)
def test_client_checks_name_the_bad_input(change, message):
  spec = serve_client.PolicySpec(METADATA)
  obs = {"image": np.zeros([1, 2, 2, 3], np.uint8), "speed": np.zeros([1], np.float32)}
  state = _state(1)
  change(obs, state)
  with pytest.raises(ValueError) as info:
    spec.check_inputs(obs, [True], state)
  assert message in str(info.value)


def test_client_drives_an_environment_through_the_rest_protocol(model_base, version_dir, restored, generation):
  _, config, _, _ = restored
  with StandInModelServer("pong", model_base) as server:
    client = serve_client.RestPolicyClient(server.url, "pong")
    assert client.spec.env_name == ENV and client.spec.metadata["train_step"] == TRAIN_STEP
    assert client.spec.metadata["generation"] == generation
    assert client.spec.metadata["config"] == config.to_yaml()
    session = serve_client.PolicySession(client, batch_size=1, greedy=True, seed=7)
    env = make_env(ENV, config, seed=1)
    serve_client.run_episodes(env, session, 25)
    env.close()
    pairs = [(r, o) for r, o in zip(server.requests, server.responses) if r["signature_name"] == "action"]
  assert len(pairs) == 25 and session.calls == 25
  # Every request carries the state that the previous response returned, unchanged by the JSON
  # round trip; and the same requests through the signature directly give the same actions.
  action_fn = tf.saved_model.load(str(version_dir)).signatures["action"]
  dtypes = {s.name: s.dtype for s in action_fn.structured_input_signature[1].values()}
  assert pairs[0][0]["inputs"]["is_first"] == [True]
  assert not np.any(pairs[0][0]["inputs"]["deter"])
  for t, (request, response) in enumerate(pairs):
    inputs = request["inputs"]
    assert inputs["seed"] == (7 << 32) + t and inputs["greedy"] is True
    if t + 1 < len(pairs):
      following = pairs[t + 1][0]["inputs"]
      for key in ("deter", "stoch", "prev_action"):
        sent = np.asarray(following[key], np.float32)
        np.testing.assert_array_equal(sent, np.asarray(response["outputs"][key], np.float32), err_msg=key)
    direct = action_fn(**{k: tf.constant(v, dtypes[k]) for k, v in inputs.items()})
    assert response["outputs"]["action"] == direct["action"].numpy().tolist()
    np.testing.assert_allclose(response["outputs"]["deter"], direct["deter"].numpy(), atol=1e-5)
  assert isinstance(session.state["deter"], np.ndarray) and session.state["deter"].shape == (1, 32)


@ONLY_2023
def test_server_errors_name_the_input_and_defaults_fill_optional_inputs(model_base):
  with StandInModelServer("pong", model_base) as server:
    client = serve_client.RestPolicyClient(server.url, "pong")
    state = client.initial_state(2)
    inputs = {"image": np.zeros([2, 64, 64, 3], np.uint8), "is_first": np.ones([2], bool), **state}
    # greedy and seed are left out: the SignatureDef's defaults (greedy, random seed) apply.
    out = client.predict("action", inputs, client.spec.action_dtypes)
    assert out["action"].shape == (2,) and out["deter"].shape == (2, 32)
    bad = dict(inputs, deter=np.zeros([2, 33], np.float32))
    with pytest.raises(serve_client.ServingError, match=r"HTTP 400 .*input deter must have shape \[batch, 32\]"):
      client.predict("action", bad)
    with pytest.raises(serve_client.ServingError, match="Missing named input: image"):
      client.predict("action", {k: v for k, v in inputs.items() if k != "image"})
    with pytest.raises(serve_client.ServingError, match="HTTP 404"):
      serve_client.RestPolicyClient(server.url, "other").initial_state(1)
  with pytest.raises(serve_client.ServingError, match="cannot reach"):
    serve_client.RestPolicyClient(server.url, "pong", timeout=2).initial_state(1)


@ONLY_2023
def test_grpc_predict_request_as_in_the_docs(model_base, version_dir):
  """docs/serving.md's gRPC loop, with the stand-in's Predict in place of a PredictionServiceStub."""
  from tensorflow_serving.apis import predict_pb2

  with StandInModelServer("pong", model_base) as server:

    def predict(signature, inputs):
      request = predict_pb2.PredictRequest()
      request.model_spec.name = "pong"
      request.model_spec.signature_name = signature
      for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
      response = server.predict_proto(request, timeout=10.0)
      return {key: tf.make_ndarray(proto) for key, proto in response.outputs.items()}

    state = predict("get_initial_state", {"batch_size": np.int32(1)})
    obs = np.zeros([1, 64, 64, 3], np.uint8)
    is_first = np.array([True])
    action_fn = tf.saved_model.load(str(version_dir)).signatures["action"]
    for t in range(3):
      inputs = {"image": obs, "is_first": is_first, **state, "greedy": np.array(True), "seed": np.int64(t)}
      out = predict("action", inputs)
      reference = action_fn(**{k: tf.constant(v) for k, v in inputs.items()})
      assert out["action"].dtype == np.int32 and out["action"].shape == (1,)
      np.testing.assert_array_equal(out["action"], reference["action"].numpy())
      action = out.pop("action")
      state = out
      assert action.shape == (1,) and state["deter"].shape == (1, 32)
      is_first = np.array([False])
