# The CPU fast paths of Mini SDF-SRN, below tinygrad's tensor API. Optional: sdfsrn.py is the whole model without
# this file. install(model) swaps the layers below in after construction (the same weights, so checkpoints do not
# change); write() refills a jit's input buffers in place through the allocator's private copy-in. FAST=0 switches
# all of it off. tests/test_fast.py proves each fast layer equals its plain one (values and gradients), that a whole
# training step does, and that the fast kernels ran. docs/benchmark.md has the measurements behind each choice.
import math
from typing import Sequence
import numpy as np
from tinygrad import Device, Tensor, UOp, dtypes, nn
from tinygrad.codegen.opt import Opt, OptOps
from tinygrad.dtype import AddrSpace
from tinygrad.helpers import getenv
from tinygrad.uop.ops import AxisType, KernelInfo, Ops
import sdfsrn

ENABLED = getenv("FAST", 1)   # FAST=0: the plain model and tinygrad's own kernels everywhere
TILE = (16, 4)                # tiled(): 16 output channels x 4 rows summed in registers at a time

def on_cpu(x:Tensor) -> bool:
  return x.device.startswith("CPU")

# *** the register-tiled matrix product ***

def tiled(x:Tensor, weight:Tensor, bias:Tensor|None=None, relu:bool=False, grad_fxn=None, rows:int=TILE[1],
          transposed:bool=False) -> Tensor:
  """x @ weight (+ bias, then ReLU if asked): [...,I] x [I,O] -> [...,O] in one kernel whose register tile is set here,
  not by tinygrad's heuristic: TILE[0] output channels (their gcd with O) x `rows` rows (a divisor of the rows),
  summed in registers, then stored in a loop of their own. tinygrad writes an upcast tile's outputs as float4 stores,
  which hold clang's vectoriser to 4 lanes; stored one by one in a loop, clang vectorises the tile 8 or 16 wide.
  transposed: weight [O,I] as nn.Linear keeps it, no bias or ReLU, for a few rows: tinygrad's own kernel with 4
  outputs x `rows` rows and the sum unrolled by 4, so each weight is read once. grad_fxn: its gradient."""
  def kernel(out:UOp, x:UOp, weight:UOp, *bias:UOp) -> UOp:
    out = out.reshape(-1, out.shape[-1])                  # [P,O]
    x = x.reshape(-1, x.shape[-1])                        # [P,I]
    P, O = out.shape
    R = rows
    C = math.gcd(O, TILE[0])
    k = UOp.range(x.shape[1], 4, AxisType.REDUCE)
    name = f"tiled_{x.shape[1]}_{O}"
    if transposed:
      i, o = UOp.range(P, 0), UOp.range(O, 1)
      tile = (Opt(OptOps.UPCAST, 1, 4), Opt(OptOps.UNROLL, 0, 4), Opt(OptOps.UPCAST, 0, R))
      product = (x[i, k] * weight[o, k]).reduce(k, arg=Ops.ADD)
      return out[i, o].store(product).end(i, o).sink(arg=KernelInfo(name=name, opts_to_apply=tile))
    i, o, t = UOp.range(P // R, 0), UOp.range(O // C, 1), UOp.range(R * C, 5)
    r, c = UOp.range(R, 2, AxisType.UPCAST), UOp.range(C, 3, AxisType.UPCAST)
    registers = UOp.placeholder((R * C,), dtypes.float, slot=0, addrspace=AddrSpace.REG)   # [R*C] the tile
    acc = registers.after(i, o)[r * C + c].set(0.0)
    acc = acc[r * C + c].set(acc.after(k)[r * C + c] + x[i * R + r, k] * weight[k, o * C + c])
    y = registers.after(acc.end(r, c, k))[t]
    if bias:
      y = y + bias[0][o * C + t % C]
    if relu:
      y = y.maximum(0.0)
    info = KernelInfo(name=name, opts_to_apply=())   # (): no heuristic upcasts on top of this tile
    return out[i * R + t // C, o * C + t % C].store(y).end(t, i, o).sink(arg=info)
  out = Tensor.empty(*x.shape[:-1], weight.shape[0 if transposed else 1], device=x.device)   # [...,O]
  inputs = [x, weight] if bias is None else [x, weight, bias]
  return out.custom_kernel(*inputs, fxn=kernel, grad_fxn=grad_fxn)[0]

def zeros(out:UOp, *_:UOp) -> UOp:
  """A kernel that writes zeros: PatchConv2d adds its output to give its custom gradient a place in the graph."""
  out = out.reshape(-1)
  i = UOp.range(math.prod(out.shape), 0)
  return out[i].store(UOp.const(0.0, dtypes.float32)).end(i).sink(arg=KernelInfo(name="zeros"))

# *** the layers: each equals its plain parent (tests/test_fast.py) ***

class PatchConv2d(nn.Conv2d):
  """A 2x2 convolution of stride 2 as one matrix product over the patches: its windows do not overlap. tinygrad's own
  backward computes the input's gradient as a masked 3x3 convolution, several times slower. On the CPU both gradients
  of the product are tiled() kernels (the first layer's patch gradient is never needed and skipped by tinygrad)."""
  def __call__(self, x:Tensor) -> Tensor:
    B, C, H, W = x.shape
    patch = x.reshape(B, C, H // 2, 2, W // 2, 2).permute(0, 2, 4, 1, 3, 5)
    patch = patch.reshape(B, H // 2, W // 2, C * 4)                                                       # [B,h,w,4C]
    weight = self.weight.reshape(self.weight.shape[0], -1)                                                   # [O,4C]
    if not on_cpu(x) or B * H * W // 4 % 4:
      return patch.linear(weight.T, self.bias).permute(0, 3, 1, 2)                                          # [B,O,h,w]
    # The product sees patches and weight detached; a kernel of zeros that takes both carries their gradients.
    def grad(g:UOp, call:UOp) -> tuple:
      g = Tensor(g).reshape(-1, weight.shape[0])                       # [P,O]
      flat = patch.reshape(-1, patch.shape[-1])                        # [P,4C]
      to_patch = g @ weight if C % 2 else tiled(g, weight)             # an odd 4C has no 16 x 4 tile
      # the weight's gradient [O,4C] in a buffer of its own, not a transposed view: workers.py reads it in place
      to_weight = tiled(flat.T.contiguous(), g).T.contiguous()
      return None, to_patch.reshape(patch.shape).uop, to_weight.uop
    carrier = Tensor.empty(*patch.shape[:-1], weight.shape[0], device=x.device)
    carrier = carrier.custom_kernel(patch, weight, fxn=zeros, grad_fxn=grad)[0]
    y = patch.detach().linear(weight.detach().T, self.bias) + carrier                                      # [B,h,w,O]
    # the output's gradient realised first: otherwise the next layer's backward fuses into both tiled() kernels
    return y.permute(0, 3, 1, 2).contiguous_backward()                                                     # [B,O,h,w]

class TiledLinear(nn.Linear):
  """A fully connected layer on a few rows [B,I] -> [B,O] (the encoder's): the product and its input gradient are
  tiled() over the largest divisor of B up to 8 rows at a time. tinygrad's own kernel reads the weight once per row."""
  def __call__(self, x:Tensor) -> Tensor:
    rows = max(d for d in range(1, 9) if x.shape[0] % d == 0)
    if not on_cpu(x) or rows == 1:   # one row leaves no row axis for the tile
      return super().__call__(x)
    def grad(g:UOp, call:UOp) -> tuple:
      g = Tensor(g)                                                    # [B,O]
      return None, tiled(g, self.weight, rows=rows).uop, (g.T @ x).uop
    return tiled(x, self.weight, rows=rows, transposed=True, grad_fxn=grad) + self.bias

class TiledDense(sdfsrn.Dense):
  """The decoder's hidden layers on the CPU: tiled() with the weight transposed to [I,O], so 16 output channels lie
  side by side, and the ReLU in the same kernel. The weight's gradient is tiled() again. The points are padded to a
  multiple of the tile's rows and cut back."""
  def __call__(self, x:Tensor) -> Tensor:
    if not on_cpu(x):
      return super().__call__(x)
    flat = x.reshape(-1, x.shape[-1])                                  # [P,I]
    P = flat.shape[0]
    flat = flat.pad(((0, -P % TILE[1]), (0, 0)))                       # [P',I]
    relu = self.relu
    def grad(g:UOp, call:UOp) -> tuple:
      x, weight, bias = (Tensor(u) for u in call.src[2:])              # [P',I] [I,O] [O]
      g = Tensor(g)                                                    # [P',O]
      if relu:
        g = g * ((x @ weight + bias) > 0)
      # the layer's [O,I] weight gets g.T @ x in a buffer of its own, not a transposed view: workers.py reads it in
      # place
      return None, (g @ weight.T).uop, tiled(g.T.contiguous(), x).T.uop, g.sum(0).uop
    y = tiled(flat, self.weight.T.contiguous(), self.bias, relu, grad)  # [P',O]
    return y[:P].reshape(*x.shape[:-1], y.shape[-1])                   # [...,O]

def swapped(layer, kind:type):
  """The same layer, weights and all, as kind: the same Tensor objects, so an optimizer built before updates them."""
  fast = kind.__new__(kind)
  fast.__dict__.update(layer.__dict__)
  return fast

def install(model:sdfsrn.SDFSRN) -> sdfsrn.SDFSRN:
  """The fast layers in place of the plain ones, unless FAST=0. Each falls back to its parent off the CPU, except the
  patch convolution, whose product is faster than tinygrad's convolution on every device (its gradients use tiled()
  only on the CPU)."""
  if not ENABLED:
    return model
  encoder, decoder = model.encoder, model.decoder
  encoder.convs = [swapped(conv, PatchConv2d) for conv in encoder.convs]
  encoder.layers[0] = swapped(encoder.layers[0], TiledLinear)
  encoder.layers[2] = swapped(encoder.layers[2], TiledLinear)
  for i in (1, 2, 3):   # the hidden layers; the last has one output, no tile to fill
    decoder.layers[i] = swapped(decoder.layers[i], TiledDense)
  return model

# *** a jit's inputs ***

def write(tensors:Sequence[Tensor], arrays:Sequence[np.ndarray]) -> Sequence[Tensor]:
  """Each array into its realised tensor's buffer, in place, so a TinyJit is handed the same buffers every call; the
  tensors. Plain: tinygrad's assign, one schedule a call; fast: the buffer's copyin, once the device is idle, without
  the scheduler, which walks every live tensor (milliseconds a call)."""
  if not ENABLED:
    Tensor.realize(*[t.assign(Tensor(np.asarray(x, t.dtype.fmt), device=t.device)) for t, x in zip(tensors, arrays)])
    return tensors
  Device[tensors[0].device].synchronize()
  for t, x in zip(tensors, arrays):
    buffer = t.uop.buffer
    buffer.allocator._copyin(buffer._buf, memoryview(np.ascontiguousarray(x, t.dtype.fmt)).cast("B"))
  return tensors
