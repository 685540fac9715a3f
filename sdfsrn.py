# The Mini SDF-SRN model: a CNN encoder maps one image to a latent code, and a shared DeepSDF-style decoder (Park et
# al. 2019) maps [latent, xyz] to a signed distance. Trained only through the silhouettes of render.py (see train.py).
# Leaves out SDF-SRN's hypernetwork (its encoder emits decoder weights), its learned LSTM ray marcher and its colour branch.
# Checkpoints live here too: training and evaluation both read them.
import json, math, os, pathlib
from tinygrad import Tensor, UOp, dtypes, nn
from tinygrad.codegen.opt import Opt, OptOps
from tinygrad.dtype import AddrSpace
from tinygrad.uop.ops import AxisType, KernelInfo, Ops

# B images, L latent size, C width of the decoder, ... any number of point axes (R rays, N samples)
LATENT = 128
WIDTH = 64
INIT_RADIUS = 0.5   # the decoder starts as the SDF of a sphere of this radius
TILE = (16, 4)      # tiled() on the CPU: 16 output channels x 4 rows at a time

def tiled(x:Tensor, weight:Tensor, bias:Tensor|None=None, relu:bool=False, grad_fxn=None, rows:int=TILE[1], transposed:bool=False) -> Tensor:
  """x @ weight (+ bias, then relu if asked): [...,I] x [I,O] -> [...,O] in one kernel whose register tile is set here,
  not by tinygrad 0.14's heuristic (README, Benchmark, stops 17 and 23): TILE[0] output channels (their gcd with O) x
  `rows` rows (dividing the rows) summed in registers, then written out in a loop of their own. transposed: weight [O,I]
  as nn.Linear keeps it, no bias or relu, for a few rows: tinygrad's kernel with 4 outputs (4 must divide O) x `rows`
  rows, the sum unrolled by 4, so the weight is read once. grad_fxn: its gradient."""
  def kernel(out:UOp, x:UOp, weight:UOp, *bias:UOp) -> UOp:
    out, x = out.reshape(-1, out.shape[-1]), x.reshape(-1, x.shape[-1])                            # [P,O], [P,I]
    (P, O), R, C, k = out.shape, rows, math.gcd(out.shape[1], TILE[0]), UOp.range(x.shape[1], 4, AxisType.REDUCE)
    if transposed:
      i, o, tile = UOp.range(P, 0), UOp.range(O, 1), (Opt(OptOps.UPCAST, 1, 4), Opt(OptOps.UNROLL, 0, 4), Opt(OptOps.UPCAST, 0, R))
      return out[i, o].store((x[i, k] * weight[o, k]).reduce(k, arg=Ops.ADD)).end(i, o).sink(arg=KernelInfo(name=f"tiled_{x.shape[1]}_{O}", opts_to_apply=tile))
    # an upcast tile's outputs are float4 stores, so clang vectorises it 4 wide; stored in a loop, 8 (AVX2) or 16 wide
    i, o, t, r, c = UOp.range(P // R, 0), UOp.range(O // C, 1), UOp.range(R * C, 5), UOp.range(R, 2, AxisType.UPCAST), UOp.range(C, 3, AxisType.UPCAST)
    registers = UOp.placeholder((R * C,), dtypes.float, slot=0, addrspace=AddrSpace.REG)              # [R*C] the tile
    acc = registers.after(i, o)[r * C + c].set(0.0)
    acc = acc[r * C + c].set(acc.after(k)[r * C + c] + x[i * R + r, k] * weight[k, o * C + c])
    y = registers.after(acc.end(r, c, k))[t] + (bias[0][o * C + t % C] if bias else 0.0)
    info = KernelInfo(name=f"tiled_{x.shape[1]}_{O}", opts_to_apply=())                            # () : no heuristic's upcasts
    return out[i * R + t // C, o * C + t % C].store(y.maximum(0.0) if relu else y).end(t, i, o).sink(arg=info)
  out = Tensor.empty(*x.shape[:-1], weight.shape[0 if transposed else 1], device=x.device)           # [...,O]
  return out.custom_kernel(x, weight, *([] if bias is None else [bias]), fxn=kernel, grad_fxn=grad_fxn)[0]

def zeros(out:UOp, *_:UOp) -> UOp:   # a custom kernel that writes zeros: conv2x2 adds it to give its input a gradient
  out, i = out.reshape(-1), UOp.range(math.prod(out.shape), 0)
  return out[i].store(UOp.const(0.0, dtypes.float32)).end(i).sink(arg=KernelInfo(name="zeros"))

def conv2x2(conv:nn.Conv2d, x:Tensor) -> Tensor:
  """conv(x) for a 2x2 convolution of stride 2: its windows do not overlap, so it is one matrix product over the patches
  (tinygrad's backward computes the input gradient as a masked 3x3 convolution; the encoder, CPU: 152 -> 27 ms)."""
  B, C, H, W = x.shape
  patch = x.reshape(B, C, H // 2, 2, W // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(B, H // 2, W // 2, C * 4)   # [B,H/2,W/2,4C]
  weight = conv.weight.reshape(conv.weight.shape[0], -1)                                                      # [O,4C]
  if not x.device.startswith("CPU") or B * H * W // 4 % 4: return patch.linear(weight.T, conv.bias).permute(0, 3, 1, 2)
  # On the CPU both gradients of the product are tiled()'s kernels (tinygrad's ran at 1-11 GFLOP/s; the first layer's
  # patch gradient, 12 columns, is never needed): the product sees patches and weight detached, and zeros carrying the
  # gradients are added. The output's gradient is realised first (contiguous_backward), or the layer after fuses into it.
  def grad(g:UOp, call:UOp) -> tuple:
    g, flat = Tensor(g).reshape(-1, weight.shape[0]), patch.reshape(-1, patch.shape[-1])                     # [P,O], [P,4C]
    # the weight's [O,4C] in a buffer of its own, not a transposed view (workers.host)
    return None, (g @ weight if C % 2 else tiled(g, weight)).reshape(patch.shape).uop, tiled(flat.T.contiguous(), g).T.contiguous().uop
  carrier = Tensor.empty(*patch.shape[:-1], weight.shape[0], device=x.device).custom_kernel(patch, weight, fxn=zeros, grad_fxn=grad)[0]
  return (patch.detach().linear(weight.detach().T, conv.bias) + carrier).permute(0, 3, 1, 2).contiguous_backward()   # [B,O,H/2,W/2]

def dense(layer:nn.Linear, x:Tensor, relu:bool) -> Tensor:
  """layer(x.contiguous()), then relu if asked, else realised: [...,I] -> [...,O], for a number of points that 4 divides
  (the decoder pads them). On the CPU tiled(), with the weight transposed, [I,O], so 16 output channels are adjacent.
  Other devices keep tinygrad's kernels (tensor cores on NVIDIA). The weight's gradient is tiled() again."""
  if not x.device.startswith("CPU"): return layer(x.contiguous()).relu() if relu else layer(x.contiguous()).contiguous()
  def grad(g:UOp, call:UOp) -> tuple:
    x, weight, bias = (Tensor(u) for u in call.src[2:])
    flat, g = x.reshape(-1, x.shape[-1]), Tensor(g).reshape(-1, weight.shape[1])                   # [P,I], [P,O]
    if relu: g = g * ((flat @ weight + bias) > 0)
    # the layer's [O,I] weight gets g.T @ flat in a buffer of its own, not a transposed view (workers.host)
    return None, (g @ weight.T).reshape(x.shape).uop, tiled(g.T.contiguous(), flat).T.uop, g.sum(0).uop
  return tiled(x, layer.weight.T.contiguous(), layer.bias, relu, grad)

def linear(layer:nn.Linear, x:Tensor) -> Tensor:
  """layer(x) for a few rows [B,I] -> [B,O] (the encoder's fully connected layers). On the CPU the product and its input
  gradient are tiled()'s kernels over the largest divisor of B up to 8 rows at a time: tinygrad's read the weight once
  per row (the first layer forward and backward, 5 images: 3.7 -> 2.0 ms; README, Benchmark, stop 20)."""
  rows = max(d for d in range(1, 9) if x.shape[0] % d == 0)
  if not x.device.startswith("CPU") or rows == 1: return layer(x)   # e.g. one row: no row axis for the tile to upcast
  grad = lambda g, call: (None, tiled(Tensor(g), layer.weight, rows=rows).uop, (Tensor(g).T @ x).uop)   # g [B,O]
  return tiled(x, layer.weight, rows=rows, transposed=True, grad_fxn=grad) + layer.bias

class Encoder:
  """Four stride-2 convolutions (3->32->64->128->256) and two fully connected layers: [B,3,H,W] -> [B,L]."""
  def __init__(self, res:int=64, latent:int=LATENT):
    self.convs = [nn.Conv2d(3, 32, 2, stride=2), nn.Conv2d(32, 64, 2, stride=2), nn.Conv2d(64, 128, 2, stride=2), nn.Conv2d(128, 256, 2, stride=2)]
    self.layers = [nn.Linear(256 * (res // 16) ** 2, 256), Tensor.relu, nn.Linear(256, latent)]
  def __call__(self, image:Tensor) -> Tensor:
    x = image
    for conv in self.convs: x = conv2x2(conv, x).relu()                                 # [B,3,H,W] -> [B,256,H/16,W/16]
    return linear(self.layers[2], self.layers[1](linear(self.layers[0], x.flatten(1))))   # [B,L]

class Decoder:
  """DeepSDF's five linear layers on [latent, xyz], the third re-reading [latent, xyz] (the skip). A linear layer on a
  concatenation is the sum of one linear layer per part, so each part gets its own: the latent's shares of the first
  and third layers (latent_in) do not depend on the point and are computed once per shape and broadcast, without L*C
  work per point; bench.py's ConcatDecoder rebuilds the concatenated layers and tests check it is the same function."""
  def __init__(self, latent:int=LATENT, width:int=WIDTH):
    self.width = width
    self.latent_in = nn.Linear(latent, 2 * width, bias=False)   # latent -> its share of the first and the skip layer
    self.skip_point = nn.Linear(3, width, bias=False)           # xyz -> its share of the skip layer
    self.layers = [nn.Linear(3, width), nn.Linear(width, width), nn.Linear(width, width), nn.Linear(width, width), nn.Linear(width, 1)]
    # Geometric initialisation (Atzmon & Lipman, SAL 2020; as in IGR/IDR): the decoder starts as roughly |x| - INIT_RADIUS
    # whatever the latent. From the default initialisation the SDF is nearly constant, every silhouette is all empty
    # or all full, the sigmoid saturates and no gradient reaches the decoder (SDF-SRN issue 5).
    for layer in self.layers[:-1] + [self.skip_point]:
      layer.weight = Tensor.normal(*layer.weight.shape, std=math.sqrt(2 / width))
      if layer.bias is not None: layer.bias = Tensor.zeros(width)
    self.latent_in.weight = Tensor.zeros(2 * width, latent)     # the latent starts without influence ...
    for layer in (self.layers[2], self.skip_point): layer.weight = layer.weight / math.sqrt(2)   # ... and IGR's concat/sqrt(2) at the skip
    last = self.layers[-1]
    last.weight = Tensor.normal(1, width, mean=math.sqrt(math.pi / width), std=1e-4)
    last.bias = Tensor([-INIT_RADIUS])

  def __call__(self, latent:Tensor, point:Tensor) -> Tensor:
    """SDF [B,...] at points [B,...,3] of shape latent [B,L]."""
    first, second, skip, fourth, last = self.layers
    B, shape, C, M = point.shape[0], point.shape[1:-1], self.width, math.prod(point.shape[1:-1])
    # each shape's M points padded to a multiple of 16, the tiles of dense() on the CPU and of CUDA's tensor cores
    point = point.reshape(B, M, 3).pad(((0, 0), (0, -M % 16), (0, 0)))                                 # [B,M',3]
    # each layer's input realised, and the skip layer's product before the sum (dense): otherwise tinygrad fuses
    # neighbouring matrix products into kernels that pick slow loop orders or recompute one (up to 2.5x slower on the CPU)
    shared = self.latent_in(latent).unsqueeze(1)                                                       # [B,1,2C]
    x = (first(point) + shared[..., :C]).relu()                                                        # [B,M',C]
    x = dense(second, x, relu=True)                                                                    # [B,M',C]
    x = (dense(skip, x, relu=False) + self.skip_point(point) + shared[..., C:]).relu()                # [B,M',C] skip
    x = dense(fourth, x, relu=True)                                                                    # [B,M',C]
    return last(x.contiguous())[:, :M, 0].reshape(B, *shape)                                           # [B,...]

class SDFSRN:
  """symmetric: the decoder is queried at (|x|,|y|,|z|), so the shape is mirror-symmetric about the three coordinate
  planes by construction and every silhouette also constrains its mirror images (train.py --symmetric)."""
  def __init__(self, res:int=64, latent:int=LATENT, width:int=WIDTH, symmetric:bool=False):
    self.encoder, self.decoder, self.symmetric = Encoder(res, latent), Decoder(latent, width), symmetric
    Tensor.realize(*nn.state.get_parameters(self))   # the initialisations above are lazy expressions until now
  def sdf(self, latent:Tensor, point:Tensor) -> Tensor:
    return self.decoder(latent, point.abs() if self.symmetric else point)                            # [B,...]

# *** checkpoints: safetensors only (loading one cannot run code), written to a temporary file and renamed ***

def save_checkpoint(path:str, model:SDFSRN, opt:nn.optim.Optimizer, epoch:int, config:dict, history:list[float]):
  """Raises OSError, with the previous checkpoint whole and no partial file left, where the disk cannot hold this one."""
  state = {f"model.{k}": v for k, v in nn.state.get_state_dict(model).items()}
  state |= {f"adam.{k}": v for k, v in nn.state.get_state_dict(opt).items() if not k.startswith("params.")}   # params: the model's, again
  metadata, tmp = dict(epoch=str(epoch), config=json.dumps(config), history=json.dumps(history)), path + ".tmp"
  # the safetensors format written from numpy with plain writes, not with nn.state.safe_save: in tinygrad 0.14 that
  # copies through the CPU device, which needs a C compiler that a GPU machine may lack, and writes through a memory
  # map, where a full disk is a SIGBUS that kills the process without a word instead of an OSError
  arrays, header, offset = {k: v.numpy() for k, v in state.items()}, {"__metadata__": metadata}, 0
  for k, a in arrays.items():
    header[k] = dict(dtype=nn.state.inverse_safe_dtypes[state[k].dtype], shape=list(a.shape), data_offsets=[offset, offset + a.nbytes])
    offset += a.nbytes
  text = json.dumps(header).encode(); text += b" " * (-len(text) % 8)   # the data starts 8-aligned
  try:
    with open(tmp, "wb") as f:
      f.write(len(text).to_bytes(8, "little") + text)
      for a in arrays.values(): f.write(a.tobytes())
  except BaseException:                       # any error, a full disk or Ctrl-C too: a partial file is no checkpoint
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise
  os.replace(tmp, path)   # atomic: a kill during the save leaves the previous checkpoint whole

def read_metadata(path:str) -> tuple[int, dict, list[float]]:
  """The epoch, config and loss history saved with a checkpoint, from its header alone: evaluation builds the model from the config."""
  meta = nn.state.safe_load_metadata(path)[2]["__metadata__"]
  return int(meta["epoch"]), json.loads(meta["config"]), json.loads(meta["history"])

def load_checkpoint(path:str, model:SDFSRN, opt:nn.optim.Optimizer|None=None) -> tuple[int, dict, list[float]]:
  state = nn.state.safe_load(path)
  nn.state.load_state_dict(model, {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}, verbose=False)
  if opt is not None: nn.state.load_state_dict(opt, {k.removeprefix("adam."): v for k, v in state.items() if k.startswith("adam.")}, strict=False, verbose=False)
  return read_metadata(path)
