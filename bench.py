# Benchmark of the default training step: ms per step, points per second, memory, time to the first step, and the
# same step built the naive way (autograd through every sample, latent concatenated to every point), side by side in
# one process on one device; on the CPU also the default step split over 2 processes (train.py --workers). `python bench.py`
# (DEV=... picks the device). Numbers are printed, never asserted.
import argparse, resource, time
import train   # first: it turns METAL=1 / CUDA=1 / CLANG=1 into DEV=... before tinygrad is imported
import numpy as np
from tinygrad import Tensor, Device, nn
from tinygrad.helpers import GlobalCounters, getenv
import render, shapes, workers
from sdfsrn import SDFSRN

STEPS = getenv("STEPS", 10)   # timed steps after the three that compile and capture the jit
FLAGS = getenv("FLAGS", 0)    # FLAGS=1: also time the step of each of train.py's flags beyond the paper
FLAG_STEPS = {"--symmetric": dict(symmetric=True), "--shading": dict(shading=1.0), "--views 6": dict(views=6), "--supervise-3d": dict(supervise_3d=True)}

class ConcatDecoder:
  """The decoder as DeepSDF writes it: the latent concatenated to every point, then five layers whose first and third
  read the concatenation. Built from the weights of sdfsrn.Decoder: the same function."""
  def __init__(self, decoder):
    first, self.second, skip, self.fourth, self.last = decoder.layers
    latent_first, latent_skip = decoder.latent_in.weight.chunk(2)
    self.first = (latent_first.cat(first.weight, dim=1), first.bias)                                     # [C,L+3]
    self.skip = (skip.weight.cat(latent_skip, decoder.skip_point.weight, dim=1), skip.bias)              # [C,C+L+3]
  def __call__(self, latent:Tensor, point:Tensor) -> Tensor:
    latent = latent.reshape(latent.shape[0], *[1] * (point.ndim - 2), latent.shape[-1]).expand(*point.shape[:-1], latent.shape[-1])
    x = inputs = latent.cat(point, dim=-1)                                                    # [B,...,L+3]
    x = self.second(x.linear(self.first[0].T, self.first[1]).relu()).relu()
    x = x.cat(inputs, dim=-1).linear(self.skip[0].T, self.skip[1]).relu()                    # [B,...,C+L+3] -> [B,...,C]
    return self.last(self.fourth(x).relu()).squeeze(-1)                                      # [B,...]

def measure(name:str, naive:bool=False, views:int=1, symmetric:bool=False, shading:float=0.0, supervise_3d:bool=False) -> float:
  data = shapes.make_dataset(train.SHAPES, train.RES, train.SEED, views=views)
  Tensor.manual_seed(0)
  model = SDFSRN(train.RES, symmetric=symmetric)
  if naive: model.decoder = ConcatDecoder(model.decoder)
  opt = nn.optim.Adam(nn.state.get_parameters(model), lr=train.LR)
  step = train.make_step(model, opt, train.device_data(data, supervise_3d), train.SAMPLES, shading, supervise_3d,   # naive: autograd
                         min_sdf=(lambda sdf_fn, o, d, depth, _: sdf_fn(render.at(o, d, depth)).min(-1)) if naive else render.min_sdf)   # through all N
  batches = train.batches(np.random.default_rng(0), train.SHAPES, views, train.RES)
  return timed(name, lambda i: step(*batches[i % len(batches)], train.T_END, train.LR).item())

def measure_workers(count:int) -> float:
  """The default step split over processes as `train.py --workers` splits it (the CPU device only)."""
  args = argparse.Namespace(shapes=train.SHAPES, res=train.RES, samples=train.SAMPLES, seed=train.SEED, rotate=False, views=1,
                            symmetric=False, shading=0.0, supervise_3d=False, resume=False, workers=count)
  mine, *theirs = parts = workers.parts(train.BATCH, count)
  helpers = workers.spawn(train.setup, args, [len(part) / train.BATCH for part in theirs])
  step = train.setup(args, len(mine) / train.BATCH, workers.sum_from_helpers(helpers))[3]
  batches = train.batches(np.random.default_rng(0), train.SHAPES, 1, train.RES)
  ms = timed(f"{count} processes", lambda i: workers.shared_step(step, helpers, parts, batches[i % len(batches)], train.T_END, train.LR))
  for conn in helpers: conn.close()   # the helpers end
  return ms

def timed(name:str, step) -> float:
  start = time.perf_counter()
  step(0)
  first = time.perf_counter() - start
  for i in (1, 2): step(i)   # the second call captures the jit, the third replays
  start = time.perf_counter()
  for i in range(STEPS): step(i)
  ms = (time.perf_counter() - start) / STEPS * 1000
  points = train.BATCH * (train.RES // train.BLOCK) ** 2 * (train.SAMPLES + 1)             # B x R x (N searched + 1 with gradient)
  print(f"{name:>14}: {ms:8.1f} ms/step  {points / ms * 1000 / 1e6:6.2f} M points/s  first step {first:5.1f} s  "
        f"device memory {GlobalCounters.mem_used / 2**20:7.1f} MiB  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:7.1f} MiB")
  return ms

if __name__ == "__main__":
  train.check_device()   # DEV=NV on a Hopper GPU, say: one line, as train.py says it
  print(f"device {Device.DEFAULT}, {train.BATCH} images x {(train.RES // train.BLOCK) ** 2} rays x {train.SAMPLES} samples, "
        f"decoder width {SDFSRN().decoder.width}, {STEPS} timed steps")
  fast = measure("default", naive=False)
  if Device.DEFAULT == "CPU": print(f"speed-up of 2 processes (train.py's default here) over one: {fast / measure_workers(2):.2f}x")
  slow = measure("naive", naive=True)
  print(f"speed-up of the default step over the naive one: {slow / fast:.1f}x")
  for flag, kwargs in FLAG_STEPS.items() if FLAGS else (): print(f"{flag:>14}: {measure(flag, **kwargs) / fast:.2f}x the default step")
