"""A stand-in for ``tensorflow_model_server``'s REST predict API, for tests on 127.0.0.1.

No TF Serving binary can be installed on the development machine, so the tests serve the
SavedModel the way the server does: loaded with the TF1 loader under the ``serve`` tag into a
session, each request's ``inputs`` converted to the signature's dtypes (missing inputs taken from
the SignatureDef's defaults, as recent servers do), the signature's tensors fed by name without
Python-side shape checks (like the server's C++ ``Session::Run``) and the outputs returned as
``{"outputs": {...}}``, or ``{"error": "..."}`` with HTTP 400.
"""

from __future__ import annotations

import json
import pathlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import tensorflow as tf

_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?:predict$")


class StandInModelServer:
  """Serves the newest version under ``base_path`` as ``model_name`` on 127.0.0.1."""

  def __init__(self, model_name: str, base_path):
    base = pathlib.Path(base_path)
    versions = sorted(int(p.name) for p in base.iterdir() if p.name.isdigit())
    self.model_name, self.version = model_name, versions[-1]
    self.graph = tf.Graph()
    self.session = tf.compat.v1.Session(graph=self.graph)
    meta_graph = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], str(base / str(self.version)))
    self.signatures = dict(meta_graph.signature_def)
    self.requests, self.responses = [], []
    self._lock = threading.Lock()
    self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
    self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
    self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._httpd.shutdown()
    self._httpd.server_close()
    self.session.close()

  def predict_proto(self, request, timeout=None):
    """gRPC ``PredictionService.Predict`` on a ``PredictRequest``: returns a ``PredictResponse``."""
    from tensorflow_serving.apis import predict_pb2

    del timeout
    signature = self.signatures[request.model_spec.signature_name or "serving_default"]
    for alias, proto in request.inputs.items():
      expected = signature.inputs[alias].dtype
      if proto.dtype != expected:
        raise ValueError(f"input {alias}: TensorProto dtype {proto.dtype} is not the signature's {expected}")
    inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
    values = self._run(signature, inputs)
    response = predict_pb2.PredictResponse()
    for key, value in values.items():
      response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
    return response

  def predict(self, body: dict) -> dict:
    name = body.get("signature_name") or "serving_default"
    if name not in self.signatures:
      raise ValueError(f'Serving signature name: "{name}" not found in signature def')
    signature = self.signatures[name]
    inputs = body.get("inputs")
    if not isinstance(inputs, dict):
      raise ValueError("Missing 'inputs' or 'instances' key")
    extra = sorted(set(inputs) - set(signature.inputs))
    if extra:
      raise ValueError(f"input size does not match signature. Sent extra: {{{','.join(extra)}}}")
    converted = {}
    for alias, info in signature.inputs.items():
      if alias not in inputs:
        continue
      dtype = tf.dtypes.as_dtype(info.dtype).as_numpy_dtype
      value = np.asarray(inputs[alias])
      if np.dtype(dtype).kind in "iub" and value.dtype.kind == "f":
        raise ValueError(f"JSON Value: {value.ravel()[:1]} not of the integer type of input {alias}")
      converted[alias] = value.astype(dtype)
    values = self._run(signature, converted)
    return {"outputs": {key: _utf8(np.asarray(value).tolist()) for key, value in values.items()}}

  def _run(self, signature, inputs: dict) -> dict:
    """Runs a signature on ``{alias: ndarray}``, filling left-out inputs from its defaults."""
    feeds = {}
    for alias, info in signature.inputs.items():
      if alias in inputs:
        value = inputs[alias]
      elif alias in signature.defaults:
        value = tf.make_ndarray(signature.defaults[alias])
      else:
        raise ValueError(f"Missing named input: {alias} in 'inputs' object.")
      feeds[self.graph.get_tensor_by_name(info.name)._as_tf_output()] = value
    names = sorted(signature.outputs)
    fetches = [self.graph.get_tensor_by_name(signature.outputs[k].name)._as_tf_output() for k in names]
    with self._lock:
      # The session's raw run: no Python-side check of feed shapes, as in tensorflow_model_server.
      values = self.session._call_tf_sessionrun(None, feeds, fetches, [], None)
    return dict(zip(names, values))

  def _handler(self):
    server = self

    class Handler(BaseHTTPRequestHandler):
      def do_POST(self):
        match = _PATH.match(self.path)
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length)
        if not match or match.group(1) != server.model_name:
          return self._reply(404, {"error": f"Servable not found for request: {self.path}"})
        if match.group(2) and int(match.group(2)) != server.version:
          return self._reply(404, {"error": f"Servable not found: version {match.group(2)}"})
        try:
          body = json.loads(raw)
          server.requests.append(body)
          response = server.predict(body)
          server.responses.append(response)
          return self._reply(200, response)
        except (ValueError, tf.errors.OpError) as e:
          message = e.message if isinstance(e, tf.errors.OpError) else str(e)
          return self._reply(400, {"error": message})

      def _reply(self, code, payload):
        data = json.dumps(payload).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

      def log_message(self, *args):
        pass

    return Handler


def _utf8(value):
  """String tensors come back as text, as TF Serving returns outputs not named ``*_bytes``."""
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if isinstance(value, list):
    return [_utf8(v) for v in value]
  return value
