# Benchmark of the default training step: ms a step, points a second, memory and the time to the first step; the same
# step built the naive way (autograd through every sample, the latent concatenated to every point) and, FAST=0, the
# plain model without fast.py's kernels; on the CPU also the step split over 2 processes (train.py --workers).
# `python bench.py` (DEV=... picks the device; STEPS=20; FLAGS=1 also times each flag's step). Printed, never asserted.
import cli   # first: it turns METAL=1 / CUDA=1 / CLANG=1 into DEV=... before tinygrad is imported
import argparse, resource, time
from typing import Callable
import numpy as np
from tinygrad import Device, Tensor, nn
from tinygrad.helpers import GlobalCounters, getenv
import fast, render, shapes, train, workers
from sdfsrn import SDFSRN, ConcatDecoder

STEPS = getenv("STEPS", 10)   # timed steps after the three that compile and capture the jit
FLAGS = getenv("FLAGS", 0)    # FLAGS=1: also time the step of each of train.py's flags beyond the paper
FLAG_STEPS = {"--symmetric": dict(symmetric=True), "--shading": dict(shading=1.0), "--views 6": dict(views=6),
              "--supervise-3d": dict(supervise_3d=True), "--pose": dict(pose="turn"),
              "--pose view": dict(pose="view")}

def naive_min_sdf(sdf_fn:Callable, origin:Tensor, direction:Tensor, depth:Tensor, _:Tensor) -> Tensor:
  """min_sdf by autograd through all N samples: what render.min_sdf's argmin gradient saves."""
  return sdf_fn(render.at(origin, direction, depth)).min(-1)

def measure(name:str, naive:bool=False, views:int=1, symmetric:bool=False, shading:float=0.0,
            supervise_3d:bool=False, pose:str|None=None) -> float:
  data = shapes.make_dataset(train.SHAPES, train.RES, train.SEED, views=views)
  Tensor.manual_seed(0)
  model = fast.install(SDFSRN(train.RES, symmetric=symmetric, pose=pose))
  if naive:
    model.decoder = ConcatDecoder(model.decoder)
  opt = nn.optim.Adam(nn.state.get_parameters(model), lr=train.LR)
  device = train.device_data(data, supervise_3d)
  min_sdf = naive_min_sdf if naive else render.min_sdf
  step = train.make_step(model, opt, device, train.SAMPLES, shading, supervise_3d, min_sdf=min_sdf)
  batches = train.batches(np.random.default_rng(0), train.SHAPES, views, train.RES)
  def one(i:int):
    step(*batches[i % len(batches)], train.T_END, train.LR)
  return timed(name, one)

def measure_workers(count:int) -> float:
  """The default step split over processes as `train.py --workers` splits it (the CPU device only)."""
  args = argparse.Namespace(shapes=train.SHAPES, res=train.RES, samples=train.SAMPLES, seed=train.SEED, rotate=False,
                            views=1, symmetric=False, shading=0.0, supervise_3d=False, pose=None, resume=False,
                            out="")
  _, step, _ = workers.start(train.setup, args, count)
  batches = train.batches(np.random.default_rng(0), train.SHAPES, 1, train.RES)
  def one(i:int):
    step(*batches[i % len(batches)], train.T_END, train.LR)
  return timed(f"{count} processes", one)   # the helpers end with this process

def timed(name:str, step:Callable[[int], None]) -> float:
  start = time.perf_counter()
  step(0)
  first = time.perf_counter() - start
  for i in (1, 2):   # the second call captures the jit, the third replays
    step(i)
  start = time.perf_counter()
  for i in range(STEPS):
    step(i)
  ms = (time.perf_counter() - start) / STEPS * 1000
  # B x R x (N searched + 1 with gradient)
  points = train.BATCH * (train.RES // train.BLOCK) ** 2 * (train.SAMPLES + 1)
  memory = GlobalCounters.mem_used / 2 ** 20
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 10
  print(f"{name:>14}: {ms:8.1f} ms/step  {points / ms * 1000 / 1e6:6.2f} M points/s  first step {first:5.1f} s  "
        f"device memory {memory:7.1f} MiB  peak RSS {rss:7.1f} MiB")
  return ms

if __name__ == "__main__":
  cli.check_device()   # DEV=NV on a Hopper GPU, say: one line, as train.py says it
  print(f"device {Device.DEFAULT}, fast paths {'on' if fast.ENABLED else 'off (FAST=0)'}, {train.BATCH} images x "
        f"{(train.RES // train.BLOCK) ** 2} rays x {train.SAMPLES} samples, {STEPS} timed steps")
  default = measure("default")
  if Device.DEFAULT == "CPU":
    print(f"speed-up of 2 processes (train.py's default here) over one: {default / measure_workers(2):.2f}x")
  naive = measure("naive", naive=True)
  print(f"speed-up of the default step over the naive one: {naive / default:.1f}x")
  if FLAGS:
    for flag, kwargs in FLAG_STEPS.items():
      print(f"{flag:>14}: {measure(flag, **kwargs) / default:.2f}x the default step")
