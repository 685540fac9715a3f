# Train Mini SDF-SRN: one image per shape in, one silhouette per shape as the only supervision, 3-D shape out.
# Data on the device, the jitted step, the loop; then evaluate.py scores the model and figures.py draws it. With no
# flags it is the paper's experiment; --views, --symmetric, --shading, --pose and --supervise-3d go beyond it (README).
import cli   # first: it turns METAL=1 / CUDA=1 / CLANG=1 into DEV=... before tinygrad is imported
import math, os, signal, sys, time
from typing import Callable, NamedTuple
import numpy as np
from tinygrad import Context, Device, Tensor, TinyJit, nn
from tinygrad.helpers import tqdm
import evaluate, fast, figures, render, sdfsrn, shapes, workers
from cli import fail, log
from sdfsrn import SDFSRN

# B images per step, S shapes, K views per shape, R rays per image per step, P = H*W pixels, N samples per ray, L latent
EPOCHS, SHAPES, RES, SAMPLES, SEED = 300, 50, 64, 24, 0
BATCH = 10
BLOCK = 4                 # one random ray in every BLOCKxBLOCK pixel block per step: R = P / BLOCK^2
LR = 1e-3                 # Adam's, held while the temperature anneals, then cosine-decayed towards 0
T_START, T_END = 0.05, render.SCORE_TEMPERATURE   # temperature annealed geometrically over the first third of training
FIGURE_EVERY = 50         # epochs between triptych figures and checkpoints
SDF_CLAMP = 0.1           # --supervise-3d: DeepSDF's clamp, so the fit spends its capacity near the surface

# *** data on the device, in the layout the step reads ***

def to_blocks(x:np.ndarray, res:int) -> np.ndarray:
  """[S,H,W,...] -> [S,R,BLOCK^2,...]: every pixel grouped with the others of its BLOCKxBLOCK block."""
  b = res // BLOCK
  x = x.reshape(x.shape[0], b, BLOCK, b, BLOCK, *x.shape[3:]).swapaxes(2, 3)
  return x.reshape(x.shape[0], b * b, BLOCK * BLOCK, *x.shape[5:])

def device_data(data:dict, supervise_3d:bool=False, seed:int=0) -> dict[str, Tensor]:
  """What the step reads, uploaded once. By shape: the input images [S,3,H,W] and their poses [S,2]. By supervision
  view, S*K rows (row = shape*K + view): camera origins [SK,3], ray directions [SK,R,BLOCK^2,3], target silhouettes
  and image shades (the image divided by the albedo) [SK,R,BLOCK^2], lights [SK,3]. For --supervise-3d, H*W points
  per shape with their true SDF, grouped like the pixels, [S,R,BLOCK^2,3] and [S,R,BLOCK^2]."""
  (S, K), res = data["view_poses"].shape[:2], data["images"].shape[-1]
  origin, direction = shapes.view_rays(data["view_poses"], res)                                  # [SK,3] [SK,P,3]
  image = data["view_images"].reshape(S * K, 3, res, res).transpose(0, 2, 3, 1)                  # [SK,H,W,3]
  out = dict(images=data["images"], poses=data["poses"], origins=origin,
             directions=to_blocks(direction.reshape(S * K, res, res, 3), res),
             targets=to_blocks(data["view_silhouettes"].reshape(S * K, res, res), res),
             shades=to_blocks((image / shapes.ALBEDO).mean(-1), res),
             lights=shapes.world_lights(data["view_poses"]))
  if supervise_3d:
    rng = np.random.default_rng([seed, 2])   # seed draws the dataset, [seed, 1] its extra views, [seed, 2] these points
    samples = [shapes.sdf_samples(s, res * res, rng) for s in data["shapes"]]
    out["sdf_points"] = np.stack([p for p, _ in samples]).reshape(S, -1, BLOCK * BLOCK, 3)
    out["sdf_values"] = np.stack([v for _, v in samples]).reshape(S, -1, BLOCK * BLOCK)
  return {k: Tensor(v.astype(np.float32)).realize() for k, v in out.items()}

def temperature(epoch:int, epochs:int) -> float:
  return T_START * (T_END / T_START) ** min(1.0, epoch / max(1, epochs // 3))

def learning_rate(epoch:int, epochs:int) -> float:
  progress = max(0.0, (epoch - epochs // 3) / max(1, epochs - epochs // 3))
  return LR * 0.5 * (1 + math.cos(math.pi * progress))

# *** the step ***

def make_step(model:SDFSRN, opt:nn.optim.Optimizer, device:dict[str, Tensor], samples:int, shading:float=0.0,
              supervise_3d:bool=False, min_sdf=render.min_sdf) -> Callable:
  """The training step over data kept on the device (device_data): a jitted loss and gradient, then a jitted Adam
  update. bench.py swaps min_sdf for autograd through every sample, to measure what the argmin gradient saves."""
  @TinyJit
  def gradient(shape:Tensor, row:Tensor, pick:Tensor, T:Tensor) -> list[Tensor]:
    """The loss and the gradients of Adam's parameters for shapes [B], their supervision views (rows of device_data)
    [B], one pixel a block [B,R] and temperature T [1]: tensors all, since TinyJit freezes Python values."""
    with Context(TRAINING=1):
      opt.zero_grad()
      code = model.encode(device["images"][shape], device["poses"][shape])                     # [B,L]
      def sdf_fn(point:Tensor) -> Tensor:
        return model.sdf(code, point)
      one = pick.one_hot(BLOCK * BLOCK)                                                         # [B,R,BLOCK^2]
      if supervise_3d:   # the upper bound: the decoder fitted to the analytic SDF, no renderer involved
        point = (device["sdf_points"][shape] * one.unsqueeze(-1)).sum(-2)                      # [B,R,3]
        truth = (device["sdf_values"][shape] * one).sum(-1)                                    # [B,R]
        loss = (sdf_fn(point).clip(-SDF_CLAMP, SDF_CLAMP) - truth.clip(-SDF_CLAMP, SDF_CLAMP)).abs().mean()
      else:
        origin = device["origins"][row].unsqueeze(1)                                           # [B,1,3]
        direction = (device["directions"][row] * one.unsqueeze(-1)).sum(-2)                   # [B,R,3]
        target = (device["targets"][row] * one).sum(-1)                                       # [B,R] 0 or 1
        depth, sampled = render.march(sdf_fn, origin, direction, samples)                     # [B,R,N] each
        # contiguous_backward: the loss's gradient at min_sdf is computed once, not in every kernel that reads it
        sdf = min_sdf(sdf_fn, origin, direction, depth, sampled).contiguous_backward()        # [B,R]
        # BCE on the logit -min_sdf/T: unlike the MSE of the sigmoid it does not vanish where a ray misses by far
        loss = (-sdf / T).binary_crossentropy_logits(target)
        if shading:
          # the photometric term: Lambert shading of the first surface crossing against the image, averaged over each
          # image's sampled pixels inside both silhouettes, then over the images (so --workers can split a batch).
          # The crossing's depth carries no gradient; its normal does (central differences).
          surface_depth, hit = render.surface(sdf_fn, origin, direction, depth, sampled)     # [B,R]
          normal = render.normal(sdf_fn, render.at(origin, direction, surface_depth))        # [B,R,3]
          shade = render.lambert(normal, device["lights"][row].unsqueeze(1))                  # [B,R]
          both = hit.float() * target                                                         # [B,R]
          truth = (device["shades"][row] * one).sum(-1)                                       # [B,R]
          error = (((shade - truth) ** 2) * both).sum(-1) / both.sum(-1).maximum(1)            # [B]
          loss = loss + shading * error.mean()
      loss.backward()
      # each gradient in a buffer of its own (workers.py sums them in place)
      gradients = [p.grad.contiguous() for p in opt.params]
      return [loss.realize(*gradients), *gradients]

  # Adam reads the gradients where gradient's replays write them (its outputs from the capture on). PCONTIG=3 lets
  # tinygrad write each parameter in place: by default an update reading more than 3 buffers goes to a temporary.
  @TinyJit
  def update():
    with Context(TRAINING=1, PCONTIG=3):
      Tensor.realize(*opt.schedule_step())

  inputs:list[Tensor] = []   # the gradient's shapes, rows, picks and T, then Adam's learning rate: the same buffers
  def step(shape:np.ndarray, row:np.ndarray, pick:np.ndarray, T:float, lr:float, exchange=None) -> float:
    """One Adam step on a batch of batches() at temperature T and learning rate lr; the batch's loss. exchange(loss,
    *gradients) replaces them with their sums over the --workers processes (workers.py)."""
    arrays = (shape, row, pick, np.array([T], np.float32), np.array([lr], np.float32))
    if not inputs:
      inputs.extend([*(Tensor(x).realize() for x in arrays[:4]), opt.lr.realize()])
    loss, *gradients = gradient(*fast.write(inputs, arrays)[:4])
    if exchange is not None:
      exchange(loss, *gradients)
    for p, g in zip(opt.params, gradients):
      p.grad = g
    update()
    return loss.item()
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

# *** a run ***

class Run(NamedTuple):
  data: dict
  model: SDFSRN
  opt: nn.optim.Optimizer
  step: Callable
  epoch: int               # epochs done: 0, or the checkpoint's with --resume
  history: list[float]     # the mean loss of each epoch done

def setup(args) -> Run:
  """The dataset, the model, Adam and the step, from the checkpoint with --resume: the same in every process."""
  data = shapes.make_dataset(args.shapes, args.res, args.seed, args.rotate, args.views)
  Tensor.manual_seed(args.seed)
  model = fast.install(SDFSRN(args.res, symmetric=args.symmetric, pose=args.pose))
  opt = nn.optim.Adam(nn.state.get_parameters(model), lr=LR)
  epoch, history = 0, []
  checkpoint = os.path.join(args.out, "model.safetensors")
  if args.resume:
    if not os.path.isfile(checkpoint):
      fail(f"nothing to resume: no {checkpoint}")
    try:
      epoch, saved, history = sdfsrn.load_checkpoint(checkpoint, model, opt)
    except Exception as e:
      fail(f"cannot resume from {checkpoint}: {type(e).__name__}: {e}")
    if saved != cli.config(args):
      fail(f"{checkpoint} was trained with {saved}, not {cli.config(args)}")
  device = device_data(data, args.supervise_3d, args.seed)
  step = make_step(model, opt, device, args.samples, args.shading, args.supervise_3d)
  return Run(data, model, opt, step, epoch, history)

def train(args):
  start = time.perf_counter()
  cli.lock_out(args.out)
  log(f"device {Device.DEFAULT}; drawing {args.shapes} shapes x {args.views} view(s) at {args.res}x{args.res}")
  processes = min(args.workers, BATCH, args.shapes)   # no more than the rows of a batch
  run, step, call = workers.start(setup, args, processes)
  checkpoint = os.path.join(args.out, "model.safetensors")
  if run.epoch:
    log(f"resuming {checkpoint} after epoch {run.epoch}")
  log("compiling the training step (the first epoch is slow)")
  # Ctrl-C lets the epoch in progress finish, so the checkpoint holds a whole number of epochs and --resume continues
  # exactly where a straight run would be
  interrupted = []
  def interrupt(*_):
    print("\nfinishing this epoch, then saving...")
    interrupted.append(True)
  signal.signal(signal.SIGINT, interrupt)
  history, checks = run.history, []   # checks: (epoch, novel-view IoU of the first shapes)
  bar = tqdm(range(run.epoch, args.epochs), desc="train", total=args.epochs - run.epoch)
  for epoch in bar:
    T, lr = temperature(epoch, args.epochs), learning_rate(epoch, args.epochs)
    # a generator per epoch: a resumed run draws exactly what a straight run does
    epoch_batches = batches(np.random.default_rng([args.seed, epoch]), args.shapes, args.views, args.res)
    losses = [step(*batch, T, lr) for batch in epoch_batches]
    history.append(sum(losses) / len(losses))
    bar.set_description(f"loss {history[-1]:.4f} T {T:.3f}")
    if not math.isfinite(history[-1]):
      fail(f"loss became {history[-1]} in epoch {epoch + 1}; the last good checkpoint ({checkpoint}) is untouched")
    due = (epoch + 1) % FIGURE_EVERY == 0 or epoch + 1 == args.epochs
    if due or interrupted:
      sdfsrn.save_checkpoint(checkpoint, run.model, run.opt, epoch + 1, cli.config(args), history)
    if interrupted:
      sys.exit(f"interrupted: saved epoch {epoch + 1} to {checkpoint}; continue with the same flags and --resume")
    if due:   # a helper, if any, measures the novel-view IoU while this process draws
      iou = call(evaluate.checkpoint_iou, args.samples)
      figures.triptych(run.model, run.data, args.samples, os.path.join(args.out, f"triptych_{epoch + 1:04d}.png"))
      checks.append((epoch + 1, iou()))
  signal.signal(signal.SIGINT, signal.default_int_handler)
  trained = time.perf_counter() - start

  held_out = call(figures.held_out_and_turntable, args)   # in a helper, if any, beside the training shapes here
  metrics, novel_sdf, meshes = evaluate.evaluate(run.model, run.data, args.samples, args.seed)
  shown = figures.turntable_shapes(run.data, evaluate.held_out_data(args.res, args.seed, args.rotate))[0]
  truth = [figures.shaded_truth(shape, figures.turntable_poses(), args.res, args.samples) for shape in shown]
  held_out_metrics, model_frames = held_out()
  figures.turntable(shown, truth, model_frames, os.path.join(args.out, "turntable.gif"))
  metrics |= held_out_metrics
  metrics |= dict(epochs=args.epochs, config=cli.config(args), workers=processes, train_seconds=round(trained, 1),
                  device=Device.DEFAULT, checkpoint_novel_iou=checks)
  metrics |= dict(wall_seconds=round(time.perf_counter() - start, 1), loss_history=history)
  paths = figures.write_figures(run.data, args.out, metrics, novel_sdf, meshes)
  log(f"training MSE {metrics['train_mse']:.4f}, novel-view IoU {metrics['novel_iou']:.3f}, volumetric IoU "
      f"{metrics['volume_iou']:.3f} (best sphere {metrics['sphere_baseline_volume_iou']:.3f}); held out: novel-view "
      f"IoU {metrics['held_out_novel_iou']:.3f}, volumetric IoU {metrics['held_out_volume_iou']:.3f} (best sphere "
      f"{metrics['held_out_sphere_baseline_volume_iou']:.3f})")
  written = " ".join([checkpoint, os.path.join(args.out, "turntable.gif"), *paths])
  log(f"{time.perf_counter() - start:.0f} s in all (training {trained:.0f} s); wrote {written}")

def memory_needed(args) -> dict[str, float]:
  """GiB a training run holds at its peak, roughly, by part: the datasets and their rays (host and device), the
  encoder's first fully connected layer with its gradient and Adam's moments (the other parameters are small), a
  step's decoder activations (about four layers of WIDTH floats a point), and the evaluation's (the decoder on CHUNK
  whole views or the 3-D grid; the encoder on the scored shapes)."""
  P, point = args.res ** 2, 4 * 4 * sdfsrn.WIDTH                            # pixels; bytes a point
  step_points = min(BATCH, args.shapes) * P // BLOCK ** 2 * args.samples
  evaluation = max(point * evaluate.CHUNK * P * args.samples, point * evaluate.GRID ** 3,
                   4 * 30 * P * min(args.shapes, evaluate.SCORED_SHAPES))   # conv activations: 30 floats a pixel
  parts = dict(data=4 * P * (args.shapes + evaluate.HELD_OUT) * (19 + 9 * args.views),   # floats a pixel: 19, +9 a view
               model=4 * 4 * 256 * 256 * P // 16 ** 2,                     # 4 copies (Adam) of [256, 256*(H/16)^2]
               step=point * step_points, evaluation=evaluation)
  return {k: v / 2 ** 30 for k, v in parts.items()}

def kept(args) -> str:
  """What a run that fails after its start leaves behind."""
  checkpoint = args.eval or os.path.join(args.out, "model.safetensors")
  if not os.path.isfile(checkpoint):
    return "no checkpoint was saved"
  return f"{checkpoint} is whole" + ("" if args.eval else ": the same flags with --resume go on from it")

if __name__ == "__main__":
  args = cli.parse(dict(epochs=EPOCHS, shapes=SHAPES, res=RES, samples=SAMPLES, seed=SEED))
  if not args.eval:
    cli.check_memory(args, memory_needed(args))
  cli.check_device()
  args.workers = cli.default_workers(args.workers)
  with cli.one_line_failures(lambda: kept(args)):
    if args.image:
      figures.reconstruct(args.eval, args.image, args.out, args.image_pose)
    elif args.eval:
      evaluate.evaluate_checkpoint(args.eval, args.workers)
    else:
      train(args)
