# Train Mini SDF-SRN: one image per shape in, one silhouette per shape as the only supervision, 3-D shape out.
# Wires shapes.py (data), sdfsrn.py (encoder + decoder), render.py (the fixed renderer), evaluate.py (metrics) and
# figures.py (pictures); writes a checkpoint, figures and metrics.json to out/. `python train.py --help` lists the
# flags. With no flags it is the paper's experiment; --views, --symmetric, --shading and --supervise-3d go beyond it
# (README, Results).
import os
# tinygrad 0.13+ asserts on the old METAL=1 / CUDA=1 / CPU=1 / CLANG=1 spellings that our users type: turn them into
# DEV=... before tinygrad is imported (CLANG became the CPU device).
for old in ("METAL", "AMD", "NV", "CUDA", "QCOM", "CL", "CPU", "CLANG", "WEBGPU"):
  if os.environ.pop(old, "") == "1": os.environ.setdefault("DEV", "CPU" if old == "CLANG" else old)
import argparse, fcntl, math, platform, signal, sys, time
from typing import Callable
import numpy as np
from tinygrad import Tensor, TinyJit, Device, Context, nn
from tinygrad.device import ALL_DEVICES
from tinygrad.helpers import DEV, tqdm
import evaluate, figures, render, sdfsrn, shapes, workers
from evaluate import fail, log
from sdfsrn import SDFSRN, save_checkpoint, load_checkpoint

# B images per step, S shapes, K views per shape, R rays per image per step, P = H*W pixels, N samples per ray, L latent size
EPOCHS, SHAPES, RES, SAMPLES, SEED = 300, 50, 64, 24, 0
BATCH = 10
BLOCK = 4                                  # one random ray in every BLOCKxBLOCK pixel block per step: R = P / BLOCK^2
LR = 1e-3                                  # Adam's, held while the temperature anneals, then cosine-decayed towards 0
T_START, T_END = 0.05, render.SCORE_TEMPERATURE   # temperature annealed geometrically over the first third of training
FIGURE_EVERY = 50                          # epochs between triptych figures and checkpoints
SDF_CLAMP = 0.1                            # --supervise-3d: DeepSDF's clamp, so the fit spends its capacity near the surface

# *** data on the device, in the layout the step reads ***

def to_blocks(x:np.ndarray, res:int) -> np.ndarray:
  """[S,H,W,...] -> [S,R,BLOCK^2,...]: every pixel grouped with the others of its BLOCKxBLOCK block."""
  b = res // BLOCK
  x = x.reshape(x.shape[0], b, BLOCK, b, BLOCK, *x.shape[3:]).swapaxes(2, 3)
  return x.reshape(x.shape[0], b * b, BLOCK * BLOCK, *x.shape[5:])

def device_data(data:dict, supervise_3d:bool=False, seed:int=0) -> dict[str, Tensor]:
  """What make_step reads, uploaded once. The input images [S,3,H,W] by shape; the supervision views flattened to
  S*K rows (row = shape*K + view): camera origins [SK,3], ray directions [SK,R,BLOCK^2,3], target silhouettes and
  image shades (the image divided by the albedo) [SK,R,BLOCK^2], lights [SK,3]; for --supervise-3d, H*W points per
  shape with their true SDF, grouped like the pixels, [S,R,BLOCK^2,3] and [S,R,BLOCK^2]: the step picks one per group,
  as many points as rays."""
  (S, K), res = data["view_poses"].shape[:2], data["images"].shape[-1]
  origin, direction = shapes.view_rays(data["view_poses"], res)                                           # [SK,3] [SK,P,3]
  shade = (data["view_images"].reshape(S * K, 3, res, res).transpose(0, 2, 3, 1) / shapes.ALBEDO).mean(-1)   # [SK,H,W]
  out = dict(images=data["images"], origins=origin, directions=to_blocks(direction.reshape(S * K, res, res, 3), res),
             targets=to_blocks(data["view_silhouettes"].reshape(S * K, res, res), res), shades=to_blocks(shade, res),
             lights=shapes.world_lights(data["view_poses"]))
  if supervise_3d:
    rng = np.random.default_rng([seed, 2])       # seed draws the dataset, [seed, 1] its extra views, [seed, 2] these points
    points = [shapes.sdf_samples(s, res * res, rng) for s in data["shapes"]]
    group = lambda x: x.reshape(len(x), -1, BLOCK * BLOCK, *x.shape[2:])
    out |= dict(sdf_points=group(np.stack([p for p, _ in points])), sdf_values=group(np.stack([v for _, v in points])))
  return {k: Tensor(v.astype(np.float32)).realize() for k, v in out.items()}

def temperature(epoch:int, epochs:int) -> float:
  return T_START * (T_END / T_START) ** min(1.0, epoch / max(1, epochs // 3))

def learning_rate(epoch:int, epochs:int) -> float:
  progress = max(0.0, (epoch - epochs // 3) / max(1, epochs - epochs // 3))
  return LR * 0.5 * (1 + math.cos(math.pi * progress))

# *** training ***

def make_step(model:SDFSRN, opt:nn.optim.Optimizer, device:dict[str, Tensor], samples:int, shading:float=0.0, supervise_3d:bool=False,
              min_sdf=render.min_sdf, share:float=1.0, exchange=None):
  """The training step over data kept on the device (device_data): a jitted gradient, then a jitted Adam update. With
  --workers, each process computes the loss and gradients of its part of the batch, weighted by its share of the batch,
  and exchange(loss, *gradients) overwrites them with their sums over all processes (workers.py). bench.py swaps
  min_sdf for full autograd through every sample to measure what the argmin gradient saves."""
  @TinyJit
  def gradient(shape:Tensor, row:Tensor, pick:Tensor, T:Tensor) -> list[Tensor]:
    """The loss and Adam's parameters' gradients for shapes [B], their views (rows of device_data) [B], one pixel a block
    [B,R] and temperature T [1], all tensors: TinyJit replays from the third call on, freezing any Python value."""
    with Context(TRAINING=1):
      opt.zero_grad()
      latent = model.encoder(device["images"][shape])                                                      # [B,L]
      sdf_fn = lambda point: model.sdf(latent, point)
      one = pick.one_hot(BLOCK * BLOCK)                                                                    # [B,R,BLOCK^2]
      if supervise_3d:   # the upper bound: the decoder fitted to the analytic SDF, no renderer involved
        fitted = sdf_fn((device["sdf_points"][shape] * one.unsqueeze(-1)).sum(-2)).clip(-SDF_CLAMP, SDF_CLAMP)   # [B,R]
        loss = (fitted - (device["sdf_values"][shape] * one).sum(-1).clip(-SDF_CLAMP, SDF_CLAMP)).abs().mean()
      else:
        origin = device["origins"][row].unsqueeze(1)                                                       # [B,1,3]
        direction = (device["directions"][row] * one.unsqueeze(-1)).sum(-2)                               # [B,R,3]
        target = (device["targets"][row] * one).sum(-1)                                                   # [B,R] 0 or 1
        depth, sampled = render.march(sdf_fn, origin, direction, samples)                                 # [B,R,N] each
        # contiguous_backward: the loss's gradient at min_sdf is computed once, not again in every kernel that reads it
        sdf = min_sdf(sdf_fn, origin, direction, depth, sampled).contiguous_backward()                    # [B,R]
        # BCE on the logit -min_sdf/T: unlike the MSE of the sigmoid it does not vanish where a ray misses by far
        loss = (-sdf / T).binary_crossentropy_logits(target)
        if shading:
          # the photometric term: Lambert shading of the first surface crossing against the image, on pixels inside both
          # silhouettes. The crossing's depth carries no gradient; its normal does (central differences of the decoder).
          surface_depth, hit = render.surface(sdf_fn, origin, direction, depth, sampled)                 # [B,R]
          shade = render.lambert(render.normal(sdf_fn, render.at(origin, direction, surface_depth)), device["lights"][row].unsqueeze(1))
          both = hit.float() * target                                                                     # [B,R]
          truth = (device["shades"][row] * one).sum(-1)                                                   # [B,R]
          loss = loss + shading * (((shade - truth) ** 2) * both).sum() / both.sum().maximum(1)
      (loss := loss * share).backward()
      return [loss.realize(*[p.grad for p in opt.params]), *[p.grad for p in opt.params]]
  # Adam reads the gradients where gradient's replays write them (its outputs from the capture on): tensors passed in
  # would cost a graph rewrite each per call. PCONTIG=3 lets tinygrad write each parameter in place: by default an
  # update reading more than 3 buffers goes to a temporary and is copied back, 24 more kernels a step.
  @TinyJit
  def update():
    with Context(TRAINING=1, PCONTIG=3): Tensor.realize(*opt.schedule_step())
  inputs:list[Tensor] = []   # gradient's (shapes, rows, picks, T), then Adam's learning rate: the same buffers every step
  def step(shape:np.ndarray, row:np.ndarray, pick:np.ndarray, T:float, lr:float) -> Tensor:
    """One Adam step on a batch of batches() at temperature T and learning rate lr; the batch's loss [] (read it before
    the next step: a jit's output is overwritten by its next call)."""
    arrays = (shape, row, pick, np.array([T], np.float32), np.array([lr], np.float32))
    if not inputs: inputs.extend([*(Tensor(x).realize() for x in arrays[:4]), opt.lr.realize()])
    loss, *gradients = gradient(*evaluate.copy_in(inputs, arrays)[:4])
    if exchange is not None: exchange(loss, *gradients)
    for p, g in zip(opt.params, gradients): p.grad = g
    update()
    return loss
  return step

def batches(rng:np.random.Generator, count:int, views:int, res:int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """One epoch: each of count shapes once in a random order, batch by batch: shapes [B], the row of a random one of
  their views [B] (always view 0 when views = 1) and one random pixel per block [B,R]."""
  order, batch, out = rng.permutation(count), min(BATCH, count), []
  for i in range(count // batch):
    shape = order[i * batch:(i + 1) * batch]
    pick = rng.integers(0, BLOCK * BLOCK, (batch, (res // BLOCK) ** 2), dtype=np.int32)
    view = rng.integers(0, views, batch) if views > 1 else np.zeros(batch, np.int64)
    out.append((shape.astype(np.int32), (shape * views + view).astype(np.int32), pick))
  return out

def config(args) -> dict:   # what a checkpoint must have been trained with to be resumed or evaluated: every flag but where and what to do
  return {k: v for k, v in vars(args).items() if k not in ("out", "resume", "eval", "image", "workers")}

def setup(args, share:float=1.0, exchange=None) -> tuple[dict, SDFSRN, nn.optim.Optimizer, Callable]:
  """The dataset, the model, Adam and the step: the same in every process (each loads the checkpoint itself with --resume)."""
  data = shapes.make_dataset(args.shapes, args.res, args.seed, args.rotate, args.views)
  Tensor.manual_seed(args.seed)
  model = SDFSRN(args.res, symmetric=args.symmetric)
  opt = nn.optim.Adam(nn.state.get_parameters(model), lr=LR)
  return data, model, opt, make_step(model, opt, device_data(data, args.supervise_3d, args.seed), args.samples, args.shading,
                                     args.supervise_3d, share=share, exchange=exchange)

def train(args):
  start = time.perf_counter()
  make_out(args.out)
  log(f"device {Device.DEFAULT}; drawing {args.shapes} shapes x {args.views} view(s) at {args.res}x{args.res}")
  size = min(BATCH, args.shapes)
  mine, *theirs = parts = workers.parts(size, args.workers)   # rows of each batch: this process's, then each helper's
  helpers = workers.spawn(setup, args, [len(part) / size for part in theirs])   # first: they set up while this process does
  data, model, opt, step = setup(args, len(mine) / size, workers.sum_from_helpers(helpers) if theirs else None)
  checkpoint, first, history, checks = os.path.join(args.out, "model.safetensors"), 0, [], []   # checks: (epoch, novel-view IoU)
  # the turntable's shapes and their truth's frames, which need no model: one is drawn at each checkpoint while a helper measures
  shown, truth = figures.turntable_shapes(data, evaluate.held_out_data(args.res, args.seed, args.rotate))[0], []
  if args.resume:
    if not os.path.isfile(checkpoint): fail(f"nothing to resume: no {checkpoint}")
    try: first, saved, history = load_checkpoint(checkpoint, model, opt)
    except Exception as e: fail(f"cannot resume from {checkpoint}: {type(e).__name__}: {e}")
    if saved != config(args): fail(f"{checkpoint} was trained with {saved}, not {config(args)}")
    log(f"resuming {checkpoint} after epoch {first}")
  log("compiling the training step (the first epoch is slow)")
  # Ctrl-C lets the epoch in progress finish, so the checkpoint holds a whole number of epochs and --resume continues
  # exactly where a straight run would be
  interrupted = []
  def interrupt(*_): print("\nfinishing this epoch, then saving..."); interrupted.append(True)
  signal.signal(signal.SIGINT, interrupt)
  for epoch in (bar := tqdm(range(first, args.epochs), desc="train", total=args.epochs - first)):
    T, lr = temperature(epoch, args.epochs), learning_rate(epoch, args.epochs)
    # a generator per epoch: a resumed run draws exactly what a straight run does
    epoch_batches = batches(np.random.default_rng([args.seed, epoch]), args.shapes, args.views, args.res)
    losses = [workers.shared_step(step, helpers, parts, batch, T, lr) for batch in epoch_batches]
    history.append(sum(losses) / len(losses))
    bar.set_description(f"loss {history[-1]:.4f} T {T:.3f}")
    if not math.isfinite(history[-1]): fail(f"loss became {history[-1]} in epoch {epoch + 1}; the last good checkpoint ({checkpoint}) is untouched")
    due = (epoch + 1) % FIGURE_EVERY == 0 or epoch + 1 == args.epochs
    if due or interrupted: save_checkpoint(checkpoint, model, opt, epoch + 1, config(args), history)
    if interrupted: sys.exit(f"interrupted: saved epoch {epoch + 1} to {checkpoint}; continue with the same flags and --resume")
    if due:   # a helper, if any, measures the curve's novel-view IoU while this process draws
      iou = workers.call(helpers, model, data, evaluate.checkpoint_iou, args.samples)
      figures.triptych(model, data, args.samples, os.path.join(args.out, f"triptych_{epoch + 1:04d}.png"))
      if len(truth) < len(shown): truth.append(figures.shaded_truth(shown[len(truth)], figures.turntable_poses(), args.res, args.samples))
      checks.append((epoch + 1, iou()))
  signal.signal(signal.SIGINT, signal.default_int_handler)
  trained = time.perf_counter() - start
  held_out = workers.call(helpers, model, data, figures.held_out_and_turntable, args)   # in a helper, if any, beside the next lines
  metrics, novel_sdf, meshes = evaluate.evaluate(model, data, args.samples, args.seed)
  # figures.turntable draws the truth's frames not drawn yet, then the GIF with the helper's, and returns the held-out metrics
  metrics |= figures.turntable(shown, args, held_out, truth) | dict(epochs=args.epochs, config=config(args), workers=len(parts),
                  train_seconds=round(trained, 1), device=Device.DEFAULT, checkpoint_novel_iou=checks)
  paths = figures.write_figures(data, args.out, metrics | dict(wall_seconds=round(time.perf_counter() - start, 1), loss_history=history), novel_sdf, meshes)
  log(f"training MSE {metrics['train_mse']:.4f}, novel-view IoU {metrics['novel_iou']:.3f}, volumetric IoU {metrics['volume_iou']:.3f} "
      f"(best sphere {metrics['sphere_baseline_volume_iou']:.3f}); held out: novel-view IoU {metrics['held_out_novel_iou']:.3f}, "
      f"volumetric IoU {metrics['held_out_volume_iou']:.3f} (best sphere {metrics['held_out_sphere_baseline_volume_iou']:.3f})")
  log(f"{time.perf_counter() - start:.0f} s in all (training {trained:.0f} s); wrote {checkpoint} {os.path.join(args.out, 'turntable.gif')} " + " ".join(paths))

# *** starting and stopping: the output folder, memory, the device, what a failure leaves ***

def make_out(path:str):
  """Create the output folder and lock it for the life of the process: a second run writing there would mix its
  checkpoints and figures with this one's."""
  try:
    os.makedirs(path, exist_ok=True)
    lock = os.open(os.path.join(path, ".lock"), os.O_RDWR | os.O_CREAT)   # never closed: the lock ends with the process
  except OSError as e: fail(f"cannot write to {path}: {e}")
  try: fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError: fail(f"another run (pid {os.read(lock, 20).decode() or '?'}) is writing to {path}: wait for it, or pick another --out")
  os.ftruncate(lock, 0); os.write(lock, str(os.getpid()).encode())

def memory_needed(args) -> dict[str, float]:
  """GiB a training run holds at its peak, roughly, by part: the datasets and their rays (host and device), the encoder's
  first fully connected layer with its gradient and Adam's moments (the other parameters are small), a step's decoder
  activations, and the evaluation's (the decoder on CHUNK whole views or the 3-D grid; the encoder on the scored shapes).
  The decoder keeps about four layers of WIDTH floats per point alive: a default step measured 89 MiB, estimated 82."""
  P, point = args.res ** 2, 4 * 4 * sdfsrn.WIDTH                                                          # pixels; bytes per point
  parts = dict(data=4 * P * (args.shapes + evaluate.HELD_OUT) * (19 + 9 * args.views),                 # floats a pixel of a shape: 19, +9 a view
               model=4 * 4 * 256 * 256 * P // 16 ** 2,                                                 # 4 copies (Adam) of [256, 256*(H/16)^2]
               step=point * min(BATCH, args.shapes) * P // BLOCK ** 2 * args.samples,
               evaluation=max(point * evaluate.CHUNK * P * args.samples, point * evaluate.GRID ** 3,
                              4 * 30 * P * min(args.shapes, evaluate.SCORED_SHAPES)))                 # conv activations: 30 floats a pixel
  return {k: v / 2 ** 30 for k, v in parts.items()}

def device_error(e:Exception) -> str:
  """What to do, for each way tinygrad 0.14 fails to start a device on our users' machines."""
  name, why = DEV.device or "the default device", f"{type(e).__name__}: {next(iter(str(e).splitlines()), '')}"
  works_here = "`python -m tinygrad.device` lists the devices that work here"
  if isinstance(e, ModuleNotFoundError) and (e.name or "").startswith("tinygrad.runtime.ops_"):
    renamed = " (clang and LLVM compile for the CPU device now: DEV=CPU)" if name in ("CLANG", "LLVM") else ""
    return f"tinygrad has no device {name}{renamed}; it has {', '.join(ALL_DEVICES)}: {works_here}"
  if "nvrtc" in why.lower():
    return (f"{name} compiles CUDA C with NVRTC, which is missing (the CUDA toolkit or pip's nvidia-cuda-nvrtc has it; NVRTC_PATH "
            f"names the library): install it, or use DEV=CUDA:PTX, which needs only the driver")
  if (isinstance(e, FileNotFoundError) and "clang" in str(e)) or "no usable devices" in str(e):
    return "tinygrad's CPU device compiles with clang, which is missing: apt-get install clang (macOS: xcode-select --install)"
  if name == "METAL" and platform.system() != "Darwin":
    return f"Metal runs only on macOS and this is {platform.system()}: leave out METAL=1 / DEV=METAL; {works_here}"
  if name == "NV" and isinstance(e, StopIteration):   # the GPU's compute class is not in tinygrad 0.14's list (seen on an H200)
    return "tinygrad 0.14's NV device drives Ampere, Ada and Blackwell GPUs, not this one (Hopper: H100, H200): use DEV=CUDA"
  if name in ("CUDA", "NV"): return f"{name} found no NVIDIA GPU and driver ({why}): install the driver, or leave out {name}=1 / DEV={name}; {works_here}"
  return f"tinygrad cannot start {repr(DEV) or 'the default device'} ({why}); {works_here}"

def check_device():   # a vectorised kernel compiled with the cache off: no driver, compiler or clang is one line, not a traceback
  try:
    with Context(CACHELEVEL=0): (Tensor.ones(64).contiguous() + 1).realize()
  except Exception as e: fail(device_error(e))

def kept(args) -> str:
  """What a run that fails after its start leaves behind."""
  if not os.path.isfile(checkpoint := args.eval or os.path.join(args.out, "model.safetensors")): return "no checkpoint was saved"
  return f"{checkpoint} is whole" + ("" if args.eval else ": the same flags with --resume go on from it")

if __name__ == "__main__":
  parser = argparse.ArgumentParser(description="Train Mini SDF-SRN on synthetic shapes from single-view silhouettes.")
  for flag, default in (("--epochs", EPOCHS), ("--shapes", SHAPES), ("--res", RES), ("--samples", SAMPLES), ("--seed", SEED)):
    parser.add_argument(flag, type=int, default=default)
  parser.add_argument("--rotate", action="store_true", help="boxes and ellipsoids in random orientations, not axis-aligned")
  parser.add_argument("--views", type=int, default=1, help="K views per shape: the input view plus K-1 random ones, "
                      "each step supervising one at random (beyond the paper: multi-view supervision)")
  parser.add_argument("--symmetric", action="store_true", help="query the decoder at (|x|,|y|,|z|): a mirror-symmetry prior")
  parser.add_argument("--shading", type=float, nargs="?", const=1.0, default=0.0, metavar="WEIGHT",
                      help="add a photometric Lambert term with this weight (default 1; beyond silhouette-only supervision)")
  parser.add_argument("--supervise-3d", action="store_true", help="upper bound: fit the decoder to the analytic SDF instead of silhouettes")
  parser.add_argument("--workers", type=int, help="processes that share each batch (data parallel; default 2 on the CPU, whose "
                      "tinygrad device computes on one core, 1 elsewhere): the same training up to float rounding; a second "
                      "process also scores the held-out shapes, after training and with --eval")
  parser.add_argument("--out", default="out", help="where checkpoint, figures and metrics.json go")
  parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
  parser.add_argument("--eval", metavar="CKPT", help="evaluate a checkpoint, print its metrics as JSON, train nothing")
  parser.add_argument("--image", help="with --eval: reconstruct this image instead; writes its views and mesh to --out")
  args = parser.parse_args()
  if args.epochs < 1 or args.shapes < 1 or args.samples < 2 or args.views < 1: parser.error("--epochs, --shapes, --views must be >= 1 and --samples >= 2")
  if args.res < 16 or args.res % 16: parser.error("--res must be a multiple of 16 (four stride-2 convolutions and 4x4 ray blocks)")
  if args.symmetric and args.rotate: parser.error("--symmetric assumes shapes mirror-symmetric about the coordinate planes; rotated shapes (--rotate) are not")
  if args.seed < 0: parser.error("--seed must be >= 0 (numpy's generators take no negative seeds)")
  if args.workers is not None and args.workers < 1: parser.error("--workers must be >= 1")
  if not 0 <= args.shading < math.inf: parser.error("--shading WEIGHT must be a finite number >= 0")
  if args.image and not args.eval: parser.error("--image needs --eval CKPT")
  if args.eval and (ignored := [f"--{k.replace('_', '-')}" for k in ("epochs", "shapes", "res", "samples", "seed", "rotate", "views", "symmetric",
                                "shading", "supervise_3d", "resume") if getattr(args, k) != parser.get_default(k)]):
    parser.error(f"--eval takes its settings from the checkpoint and would ignore {' '.join(ignored)}")
  total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
  if not args.eval and sum((need := memory_needed(args)).values()) > total:
    fail(f"--shapes {args.shapes} --res {args.res} --samples {args.samples} --views {args.views} need about {sum(need.values()):.0f} GiB of memory "
         f"({', '.join(f'{k} {v:.1f}' for k, v in need.items())}), more than the {total:.0f} GiB here: lower them")
  check_device()
  if args.workers is None: args.workers = 2 if Device.DEFAULT == "CPU" else 1
  if args.workers > 1 and Device.DEFAULT != "CPU": fail(f"--workers above 1 is for the CPU device (processes share its memory), not {Device.DEFAULT}")
  try:
    if args.image: figures.reconstruct(args.eval, args.image, args.out)
    elif args.eval: evaluate.evaluate_checkpoint(args.eval, args.workers)
    else: train(args)
  except (KeyboardInterrupt, MemoryError, OSError) as e:   # how a started run fails without a bug: one line, and what survived
    why = ("interrupted" if isinstance(e, KeyboardInterrupt) else f"out of memory ({e})" if isinstance(e, MemoryError) else
           f"{f'{e.filename}: ' if e.filename else ''}{e.strerror or e}")
    print(file=sys.stderr)                                  # off the line of a progress bar left open
    fail(f"{why}; {kept(args)}")
