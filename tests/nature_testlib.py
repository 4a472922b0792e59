"""Shared by the current generation's tests: the author's size presets and parameter names."""

# dreamerv3/configs.yaml (danijar/dreamerv3 e3f0224): rssm deter / hidden / classes, depth, units.
SIZES = {
  "size1m": (512, 64, 4, 4, 64),
  "size12m": (2048, 256, 16, 16, 256),
  "size25m": (3072, 384, 24, 24, 384),
  "size50m": (4096, 512, 32, 32, 512),
  "size100m": (6144, 768, 48, 48, 768),
  "size200m": (8192, 1024, 64, 64, 1024),
  "size400m": (12288, 1536, 96, 96, 1536),
}


def add_names(names, prefix, layer, norm=None, norm_name=None):
  """Adds ``<prefix>/kernel``, ``<prefix>/bias`` and the norm's scale (``<prefix>norm/scale``) to ``names``."""
  names.update({f"{prefix}/kernel": layer.kernel, f"{prefix}/bias": layer.bias})
  if norm is not None:
    names[norm_name or f"{prefix}norm/scale"] = norm.scale


def block_gru_names(names, scope, gru):
  """The author's names (``dreamerv3/rssm.py:RSSM._core``) of a :class:`BlockGRU`'s variables, under ``scope``."""
  for i, layer in enumerate(gru.inputs_in):
    add_names(names, f"{scope}/dynin{i}", layer.dense, layer.norm)
  for i, (layer, norm) in enumerate(zip(gru.hidden_layers, gru.hidden_norms)):
    add_names(names, f"{scope}/dynhid{i}", layer, norm)
  add_names(names, f"{scope}/dyngru", gru.gates)


def image_names(names, enc, dec):
  """The author's names (``dreamerv3/rssm.py:Encoder/Decoder``) of the image encoder's and decoder's variables."""
  for i, (conv, norm) in enumerate(zip(enc.convs, enc.norms)):
    add_names(names, f"enc/cnn{i}", conv, norm)
  add_names(names, "dec/sp0", dec.deter_space)
  add_names(names, "dec/sp1", dec.stoch_hidden.dense, dec.stoch_hidden.norm)
  add_names(names, "dec/sp2", dec.stoch_space)
  names["dec/spnorm/scale"] = dec.space_norm.scale
  for conv, norm in zip(dec.convs, dec.norms):
    add_names(names, f"dec/{conv.name}", conv, norm)
  add_names(names, "dec/imgout", dec.out)
