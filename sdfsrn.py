# The Mini SDF-SRN model: a CNN encoder maps one image to a latent code, and a shared DeepSDF-style decoder (Park et
# al. 2019) maps [latent, xyz] to a signed distance. Trained only through the silhouettes of render.py (see train.py).
# Leaves out SDF-SRN's hypernetwork (its encoder emits decoder weights), its learned LSTM ray marcher and its colour
# branch. Plain tensor API only: fast.py swaps faster CPU kernels in after construction. Checkpoints live here too.
import json, math, os, pathlib
from tinygrad import Tensor, nn

# B images, L latent size, C decoder width, ... any number of point axes (R rays, N samples)
LATENT = 128
WIDTH = 64
INIT_RADIUS = 0.5   # the decoder starts as the SDF of a sphere of this radius

class Encoder:
  """Four 2x2 convolutions of stride 2 (3->32->64->128->256), then two fully connected layers: [B,3,H,W] -> [B,L]."""
  def __init__(self, res:int=64, latent:int=LATENT, view:bool=False):
    self.convs = [nn.Conv2d(3, 32, 2, stride=2), nn.Conv2d(32, 64, 2, stride=2),
                  nn.Conv2d(64, 128, 2, stride=2), nn.Conv2d(128, 256, 2, stride=2)]
    self.layers = [nn.Linear(256 * (res // 16) ** 2, 256), Tensor.relu, nn.Linear(256, latent)]
    if view:   # --pose view: the camera's direction [B,3] also reaches the first fully connected layer
      self.view_in = nn.Linear(3, 256, bias=False)

  def __call__(self, image:Tensor, view:Tensor|None=None) -> Tensor:
    x = image
    for conv in self.convs:
      x = conv(x).relu()                         # [B,3,H,W] -> ... -> [B,256,H/16,W/16]
    first, relu, last = self.layers
    x = first(x.flatten(1))                      # [B,256]
    if view is not None:   # a linear layer on [features, view] is the sum of one per part
      x = x + self.view_in(view)
    return last(relu(x))                         # [B,L]

class Dense(nn.Linear):
  """A decoder layer, x W^T + b, then ReLU when relu. Its input is realised first: otherwise tinygrad fuses the
  previous layer's matrix product into this one's kernel, where it picks a slow loop order or computes it twice."""
  def __init__(self, in_features:int, out_features:int, relu:bool=True):
    super().__init__(in_features, out_features)
    self.relu = relu

  def __call__(self, x:Tensor) -> Tensor:
    y = super().__call__(x.contiguous())
    return y.relu() if self.relu else y

class Decoder:
  """DeepSDF's five layers on [latent, xyz], the third re-reading [latent, xyz] (the skip). A linear layer on a
  concatenation is the sum of one linear layer per part, so each part gets its own: the latent's shares of the first
  and third layers (latent_in) do not depend on the point, so they are computed once per shape and broadcast instead
  of L*C work per point. ConcatDecoder below is the concatenated form; the tests check they are the same function."""
  def __init__(self, latent:int=LATENT, width:int=WIDTH):
    self.width = width
    self.latent_in = nn.Linear(latent, 2 * width, bias=False)   # latent -> its share of the first and the skip layer
    self.skip_point = nn.Linear(3, width, bias=False)           # xyz -> its share of the skip layer
    self.layers = [nn.Linear(3, width), Dense(width, width), Dense(width, width, relu=False), Dense(width, width),
                   Dense(width, 1, relu=False)]
    # Geometric initialisation (Atzmon & Lipman, SAL 2020; as in IGR/IDR): the decoder starts as roughly
    # |x| - INIT_RADIUS whatever the latent. From the default initialisation the SDF is nearly constant, every
    # silhouette is all empty or all full, the sigmoid saturates and no gradient reaches the decoder (SDF-SRN issue 5).
    for layer in self.layers[:-1] + [self.skip_point]:
      layer.weight = Tensor.normal(*layer.weight.shape, std=math.sqrt(2 / width))
      if layer.bias is not None:
        layer.bias = Tensor.zeros(width)
    self.latent_in.weight = Tensor.zeros(2 * width, latent)   # the latent starts without influence ...
    for layer in (self.layers[2], self.skip_point):            # ... and IGR's concat / sqrt(2) at the skip
      layer.weight = layer.weight / math.sqrt(2)
    last = self.layers[-1]
    last.weight = Tensor.normal(1, width, mean=math.sqrt(math.pi / width), std=1e-4)
    last.bias = Tensor([-INIT_RADIUS])

  def __call__(self, latent:Tensor, point:Tensor) -> Tensor:
    """SDF [B,...] at points [B,...,3] of the shapes latent [B,L]."""
    first, second, skip, fourth, last = self.layers
    C = self.width
    shared = self.latent_in(latent).reshape(latent.shape[0], *[1] * (point.ndim - 2), 2 * C)   # [B,1..,2C]
    x = (first(point) + shared[..., :C]).relu()                                   # [B,...,C]
    x = second(x)                                                                 # [B,...,C]
    x = (skip(x) + self.skip_point(point) + shared[..., C:]).relu()               # [B,...,C] the skip
    x = fourth(x)                                                                 # [B,...,C]
    return last(x).squeeze(-1)                                                    # [B,...]

class ConcatDecoder:
  """The decoder as DeepSDF writes it: the latent concatenated to every point, then five layers whose first and third
  read the concatenation. Built from the weights of a Decoder, so it is the same function (bench.py's naive step)."""
  def __init__(self, decoder:Decoder):
    first, self.second, skip, self.fourth, self.last = decoder.layers
    latent_first, latent_skip = decoder.latent_in.weight.chunk(2)
    self.first_weight, self.first_bias = latent_first.cat(first.weight, dim=1), first.bias             # [C,L+3]
    self.skip_weight = skip.weight.cat(latent_skip, decoder.skip_point.weight, dim=1)                  # [C,C+L+3]
    self.skip_bias = skip.bias

  def __call__(self, latent:Tensor, point:Tensor) -> Tensor:
    latent = latent.reshape(latent.shape[0], *[1] * (point.ndim - 2), latent.shape[-1])
    inputs = latent.expand(*point.shape[:-1], latent.shape[-1]).cat(point, dim=-1)      # [B,...,L+3]
    x = inputs.linear(self.first_weight.T, self.first_bias).relu()                      # [B,...,C]
    x = self.second(x)
    x = x.cat(inputs, dim=-1).linear(self.skip_weight.T, self.skip_bias).relu()          # [B,...,C+L+3] -> [B,...,C]
    return self.last(self.fourth(x)).squeeze(-1)                                        # [B,...]

class SDFSRN:
  """The encoder and the decoder. A shape's code is its latent [B,L]; with pose ("turn" or "view": train.py --pose) also
  the cosine and sine of the input view's quarter-turn [B,L+2], and sdf() reads the decoder in that turned frame.
  symmetric: the decoder is queried at (|x|,|y|,|z|), so the shape is mirror-symmetric about the three coordinate
  planes by construction and every silhouette also constrains its mirror images (train.py --symmetric)."""
  def __init__(self, res:int=64, latent:int=LATENT, width:int=WIDTH, symmetric:bool=False, pose:str|None=None):
    self.encoder = Encoder(res, latent, view=pose == "view")
    self.decoder = Decoder(latent, width)
    self.symmetric = symmetric
    self.pose = pose
    Tensor.realize(*nn.state.get_parameters(self))   # the initialisations above are lazy expressions until now

  def encode(self, image:Tensor, pose:Tensor) -> Tensor:
    """The codes [B,L] or [B,L+2] of images [B,3,H,W] seen from poses [B,2] (azimuth, elevation in degrees; read
    only with pose)."""
    if not self.pose:
      return self.encoder(image)                                                   # [B,L]
    # The image of a box (a,b,c) seen from azimuth t is the image of the box (c,b,a) seen from t + 90: no image says
    # which of the two it is. In a frame turned by the view's quarter-turn k both are the same box, seen from the
    # same azimuth t - 90k in [0, 90). cos and sin of 90k by comparisons: exact, so the turn is too.
    azimuth, elevation = pose[:, 0], pose[:, 1]                                    # [B] each
    k = (azimuth / 90).floor()                                                     # [B] 0, 1, 2 or 3
    cos = (k == 0).float() - (k == 2).float()                                      # [B] exact: 1, 0, -1, 0
    sin = (k == 1).float() - (k == 3).float()                                      # [B] exact: 0, 1, 0, -1
    turn = Tensor.stack(cos, sin, dim=1)                                           # [B,2]
    view = None
    if self.pose == "view":   # the camera's direction in the turned frame: where in its quarter it looks from
      inside = (azimuth - 90 * k) * (math.pi / 180)                                # [B] in [0, pi/2)
      up = elevation * (math.pi / 180)                                             # [B]
      view = Tensor.stack(inside.cos() * up.cos(), up.sin(), inside.sin() * up.cos(), dim=1)   # [B,3]
    return self.encoder(image, view).cat(turn, dim=1)                              # [B,L+2]

  def sdf(self, code:Tensor, point:Tensor) -> Tensor:
    """SDF [B,...] at world points [B,...,3] of the shapes code [B,L] (or [B,L+2], encode)."""
    latent = code
    if self.pose:
      latent = code[:, :-2]
      cos, sin = (code[:, i].reshape(code.shape[0], *[1] * (point.ndim - 2)) for i in (-2, -1))   # [B,1..] each
      x, y, z = point[..., 0], point[..., 1], point[..., 2]
      point = Tensor.stack(x * cos + z * sin, y, z * cos - x * sin, dim=-1)      # [B,...,3] in the turned frame
    return self.decoder(latent, point.abs() if self.symmetric else point)          # [B,...]

# *** checkpoints: safetensors only (loading one cannot run code), written to a temporary file and renamed ***

def save_checkpoint(path:str, model:SDFSRN, opt:nn.optim.Optimizer, epoch:int, config:dict, history:list[float]):
  """Raises OSError, with the previous checkpoint whole and no partial file left, where the disk cannot hold this one.
  Written from numpy with plain writes, not with nn.state.safe_save: in tinygrad 0.14 that copies through the CPU
  device, which needs a C compiler a GPU machine may lack, and writes through a memory map, where a full disk is a
  SIGBUS that kills the process without a word instead of an OSError."""
  state = {f"model.{k}": v for k, v in nn.state.get_state_dict(model).items()}
  for k, v in nn.state.get_state_dict(opt).items():
    if not k.startswith("params."):   # Adam's params are the model's, again
      state[f"adam.{k}"] = v
  header = {"__metadata__": dict(epoch=str(epoch), config=json.dumps(config), history=json.dumps(history))}
  arrays, offset = {k: v.numpy() for k, v in state.items()}, 0
  for k, a in arrays.items():
    dtype = nn.state.inverse_safe_dtypes[state[k].dtype]
    header[k] = dict(dtype=dtype, shape=list(a.shape), data_offsets=[offset, offset + a.nbytes])
    offset += a.nbytes
  text = json.dumps(header).encode()
  text += b" " * (-len(text) % 8)   # the data starts 8-aligned
  tmp = path + ".tmp"
  try:
    with open(tmp, "wb") as f:
      f.write(len(text).to_bytes(8, "little") + text)
      for a in arrays.values():
        f.write(a.tobytes())
  except BaseException:   # any error, a full disk or Ctrl-C too: a partial file is no checkpoint
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise
  os.replace(tmp, path)   # atomic: a kill during the save leaves the previous checkpoint whole

def read_metadata(path:str) -> tuple[int, dict, list[float]]:
  """The epoch, config and loss history saved with a checkpoint, from its header alone."""
  meta = nn.state.safe_load_metadata(path)[2]["__metadata__"]
  return int(meta["epoch"]), json.loads(meta["config"]), json.loads(meta["history"])

def load_checkpoint(path:str, model:SDFSRN, opt:nn.optim.Optimizer|None=None) -> tuple[int, dict, list[float]]:
  state = nn.state.safe_load(path)
  weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
  nn.state.load_state_dict(model, weights, verbose=False)
  if opt is not None:
    moments = {k.removeprefix("adam."): v for k, v in state.items() if k.startswith("adam.")}
    nn.state.load_state_dict(opt, moments, strict=False, verbose=False)
  return read_metadata(path)
