# Train Mini SDF-SRN: one image per shape in, one silhouette per shape as the only supervision, 3-D shape out.
# Wires shapes.py (data), sdfsrn.py (encoder + decoder) and render.py (the fixed renderer); writes a checkpoint,
# figures and metrics.json to out/. `python train.py --help` lists the flags; `--eval CKPT` scores a checkpoint.
import os
# tinygrad 0.13+ asserts on the old METAL=1 / CUDA=1 / CPU=1 / CLANG=1 spellings that our users type: turn them into
# DEV=... before tinygrad is imported (CLANG became the CPU device).
for old, new in (("METAL", "METAL"), ("CUDA", "CUDA"), ("NV", "NV"), ("AMD", "AMD"), ("CPU", "CPU"), ("CLANG", "CPU")):
  if os.environ.pop(old, "") == "1": os.environ.setdefault("DEV", new)
import argparse, json, math, signal, sys, time
import numpy as np
from PIL import Image
from tinygrad import Tensor, TinyJit, Device, Context, nn
from tinygrad.helpers import tqdm
import render, shapes
from sdfsrn import SDFSRN

# B images per step, S shapes, V views, R rays per image per step, P = H*W pixels, N samples per ray, L latent size
EPOCHS, SHAPES, RES, SAMPLES, SEED = 300, 50, 64, 24, 0
BATCH = 10
BLOCK = 4                                  # one random ray in every BLOCKxBLOCK pixel block per step: R = P / BLOCK^2
LR = 1e-3
T_START, T_END = 0.05, 0.01                # temperature annealed geometrically over the first third of training
FIGURE_EVERY = 50                          # epochs between triptych figures and checkpoints
FIGURE_SHAPES = 6
CHUNK = 4                                  # views rendered at once when evaluating full images

# *** data on the device, in the layout the step reads ***

def to_blocks(x:np.ndarray, res:int) -> np.ndarray:
  """[S,H,W,...] -> [S,R,BLOCK^2,...]: every pixel grouped with the others of its BLOCKxBLOCK block."""
  b = res // BLOCK
  x = x.reshape(x.shape[0], b, BLOCK, b, BLOCK, *x.shape[3:]).swapaxes(2, 3)
  return x.reshape(x.shape[0], b * b, BLOCK * BLOCK, *x.shape[5:])

def view_rays(poses:np.ndarray, res:int) -> tuple[np.ndarray, np.ndarray]:
  rays = [shapes.camera_rays(az, el, res) for az, el in poses.reshape(-1, 2)]
  return np.stack([r[0] for r in rays]), np.stack([r[1] for r in rays])                  # [V,3] [V,P,3]

def temperature(epoch:int, epochs:int) -> float:
  return T_START * (T_END / T_START) ** min(1.0, epoch / max(1, epochs // 3))

# *** evaluation on full images ***

def render_views(model:SDFSRN, latent:np.ndarray, origin:np.ndarray, direction:np.ndarray, samples:int) -> np.ndarray:
  """min_sdf [V,P] of every pixel of V views, CHUNK views at a time under one jitted function (the last chunk is
  padded so every call has the same shapes). latent [V,L] is the code of each view's shape."""
  @TinyJit
  def chunk(latent:Tensor, origin:Tensor, direction:Tensor) -> Tensor:
    return model.decoder(latent, render.sample_points(origin.unsqueeze(1), direction, samples)).min(-1).realize()   # [CHUNK,P]
  out, V = [], len(origin)
  pad = -V % CHUNK
  latent, origin, direction = (np.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)) for x in (latent, origin, direction))
  for i in range(0, V + pad, CHUNK):
    out.append(chunk(*(Tensor(x[i:i + CHUNK]) for x in (latent, origin, direction))).numpy())
  return np.concatenate(out)[:V]                                                                               # [V,P]

def iou(mask:np.ndarray, truth:np.ndarray) -> float:
  """Mean over views of intersection over union of hard masks [V,...]; a view where both are empty counts 1."""
  mask, truth = mask.reshape(len(mask), -1) > 0.5, truth.reshape(len(truth), -1) > 0.5
  inter, union = (mask & truth).sum(-1), (mask | truth).sum(-1)
  return float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).mean())

def evaluate(model:SDFSRN, data:dict, samples:int) -> tuple[dict, np.ndarray, np.ndarray]:
  """Training-view MSE (soft silhouette at T_END) and IoU, novel-view IoU; also the min_sdf of both sets."""
  S, V, res = len(data["images"]), data["novel_poses"].shape[1], data["images"].shape[-1]
  latent = model.encoder(Tensor(data["images"])).numpy()                                                     # [S,L]
  train_sdf = render_views(model, latent, *view_rays(data["poses"], res), samples)                          # [S,P]
  novel_sdf = render_views(model, latent.repeat(V, 0), *view_rays(data["novel_poses"], res), samples).reshape(S, V, -1)
  soft = 1 / (1 + np.exp(np.clip(train_sdf / T_END, -60, 60)))
  truth = data["silhouettes"].reshape(S, -1)
  metrics = dict(train_mse=float(((soft - truth) ** 2).mean()), train_iou=iou(train_sdf < 0, truth),
                 novel_iou=iou((novel_sdf < 0).reshape(S * V, -1), data["novel_silhouettes"].reshape(S * V, -1)))
  return metrics, train_sdf, novel_sdf

# *** figures ***

def save_png(rows:list[list[np.ndarray]], path:str, scale:int=2):
  """Tile [H,W] gray or [H,W,3] colour images in [0,1] into a grid with 2-pixel gutters."""
  rgb = lambda x: np.repeat(x[..., None], 3, -1) if x.ndim == 2 else x
  h, w = rows[0][0].shape[:2]
  grid = np.ones(((h + 2) * len(rows), (w + 2) * max(len(r) for r in rows), 3), np.float32)
  for i, row in enumerate(rows):
    for j, x in enumerate(row): grid[i * (h + 2):i * (h + 2) + h, j * (w + 2):j * (w + 2) + w] = rgb(x)
  Image.fromarray((grid.clip(0, 1) * 255).astype(np.uint8)).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST).save(path)

def difference(pred:np.ndarray, truth:np.ndarray) -> np.ndarray:
  """Red: predicted but not there; blue: there but missed; white: agreement."""
  return np.stack([1 - (truth - pred).clip(0, 1), 1 - np.abs(pred - truth), 1 - (pred - truth).clip(0, 1)], -1)

def triptych(model:SDFSRN, data:dict, samples:int, path:str):
  """Input image, ground truth, prediction and difference on the training view of the first few shapes."""
  res, n, rows = data["images"].shape[-1], min(FIGURE_SHAPES, len(data["images"])), []
  latent = model.encoder(Tensor(data["images"][:n])).numpy()                                                 # [n,L]
  train_sdf = render_views(model, latent, *view_rays(data["poses"][:n], res), samples)                      # [n,P]
  for s in range(n):
    pred, truth = (train_sdf[s] < 0).reshape(res, res).astype(np.float32), data["silhouettes"][s]
    rows.append([data["images"][s].transpose(1, 2, 0), truth, pred, difference(pred, truth)])
  save_png(rows, path)

def novel_grid(data:dict, novel_sdf:np.ndarray, path:str):
  res, rows = data["images"].shape[-1], []
  for s in range(len(novel_sdf)):
    pairs = [[data["novel_silhouettes"][s, v], (novel_sdf[s, v] < 0).reshape(res, res).astype(np.float32)] for v in range(novel_sdf.shape[1])]
    rows.append([data["images"][s].transpose(1, 2, 0)] + [x for pair in pairs for x in pair])
  save_png(rows, path, scale=1)

# *** checkpoints: safetensors only (loading one cannot run code), written to a temporary file and renamed ***

def config(args) -> dict: return dict(shapes=args.shapes, res=args.res, samples=args.samples, seed=args.seed, epochs=args.epochs)

def save_checkpoint(path:str, model:SDFSRN, opt:nn.optim.Optimizer, epoch:int, cfg:dict, history:list[float]):
  state = {f"model.{k}": v for k, v in nn.state.get_state_dict(model).items()}
  state |= {f"adam.{k}": v for k, v in nn.state.get_state_dict(opt).items() if not k.startswith("params.")}
  nn.state.safe_save(state, path + ".tmp", metadata=dict(epoch=str(epoch), config=json.dumps(cfg), history=json.dumps(history)))
  os.replace(path + ".tmp", path)   # atomic: a kill during the save leaves the previous checkpoint whole

def load_checkpoint(path:str, model:SDFSRN, opt:nn.optim.Optimizer|None=None) -> tuple[int, dict, list[float]]:
  state = nn.state.safe_load(path)
  meta = nn.state.safe_load_metadata(path)[2].get("__metadata__", {})
  nn.state.load_state_dict(model, {k[6:]: v for k, v in state.items() if k.startswith("model.")}, verbose=False)
  if opt is not None:
    nn.state.load_state_dict(opt, {k[5:]: v for k, v in state.items() if k.startswith("adam.")}, strict=False, verbose=False)
  return int(meta["epoch"]), json.loads(meta["config"]), json.loads(meta["history"])

# *** training ***

def make_step(model:SDFSRN, opt:nn.optim.Optimizer, images:Tensor, origins:Tensor, directions:Tensor, targets:Tensor, samples:int,
              min_sdf=render.min_sdf):
  """The jitted training step over data kept on the device: images [S,3,H,W], camera origins [S,3], ray directions
  [S,R,BLOCK^2,3] and target silhouettes [S,R,BLOCK^2], pixels grouped by block (to_blocks). bench.py swaps min_sdf
  for full autograd through every sample to measure what the argmin gradient saves."""
  @TinyJit
  def step(shape:Tensor, pick:Tensor, temperature:Tensor) -> Tensor:
    """One Adam step on shapes [B] and one pixel per block [B,R]. Everything that changes between calls comes in as
    a tensor: TinyJit replays the captured kernels from the third call on, freezing any Python value."""
    with Context(TRAINING=1):
      opt.zero_grad()
      latent = model.encoder(images[shape])                                                                  # [B,L]
      one = pick.one_hot(BLOCK * BLOCK)                                                                      # [B,R,BLOCK^2]
      direction = (directions[shape] * one.unsqueeze(-1)).sum(-2)                                           # [B,R,3]
      target = (targets[shape] * one).sum(-1)                                                               # [B,R]
      sdf = min_sdf(lambda p: model.decoder(latent, p), origins[shape].unsqueeze(1), direction, samples)          # [B,R]
      # BCE on the logit -min_sdf/T: unlike the MSE of the sigmoid it does not vanish where a ray misses by far
      loss = (-sdf / temperature).binary_crossentropy_logits(target).backward()
      return loss.realize(*opt.schedule_step())
  return step

def device_data(data:dict) -> tuple[Tensor, Tensor, Tensor, Tensor]:
  """What make_step reads, uploaded once: images [S,3,H,W], origins [S,3], directions [S,R,BLOCK^2,3], targets [S,R,BLOCK^2]."""
  S, res = data["images"].shape[0], data["images"].shape[-1]
  origin, direction = view_rays(data["poses"], res)
  return Tensor(data["images"]).realize(), Tensor(origin).realize(), \
         Tensor(to_blocks(direction.reshape(S, res, res, 3), res)).realize(), Tensor(to_blocks(data["silhouettes"], res)).realize()

def batches(rng:np.random.Generator, shapes:int, res:int) -> list[tuple[Tensor, Tensor]]:
  """One epoch: every shape once in a random order, batch by batch, with one random pixel per block [B,R]."""
  order, batch = rng.permutation(shapes), min(BATCH, shapes)
  return [(Tensor(order[i * batch:(i + 1) * batch].astype(np.int32)), Tensor(rng.integers(0, BLOCK * BLOCK, (batch, (res // BLOCK) ** 2), dtype=np.int32)))
          for i in range(shapes // batch)]

def train(args):
  start = time.perf_counter()
  data = shapes.make_dataset(args.shapes, args.res, args.seed)
  Tensor.manual_seed(args.seed)
  model = SDFSRN(args.res)
  opt = nn.optim.Adam(nn.state.get_parameters(model), lr=LR)
  step = make_step(model, opt, *device_data(data), args.samples)
  checkpoint, first, history = os.path.join(args.out, "model.safetensors"), 0, []
  if args.resume:
    if not os.path.isfile(checkpoint): fail(f"nothing to resume: no {checkpoint}")
    first, saved, history = load_checkpoint(checkpoint, model, opt)
    if saved != config(args): fail(f"{checkpoint} was trained with {saved}, not {config(args)}")
    print(f"resuming {checkpoint} after epoch {first}")
  # Ctrl-C lets the epoch in progress finish, so the checkpoint holds a whole number of epochs and --resume continues
  # exactly where a straight run would be
  interrupted = []
  signal.signal(signal.SIGINT, lambda *_: interrupted.append(print("\nfinishing this epoch, then saving...")))
  for epoch in (bar := tqdm(range(first, args.epochs), desc="train", total=args.epochs - first)):
    t = Tensor([temperature(epoch, args.epochs)])
    # a generator per epoch: a resumed run draws exactly what a straight run does
    losses = [step(shape, pick, t) for shape, pick in batches(np.random.default_rng([args.seed, epoch]), args.shapes, args.res)]
    history.append(sum(l.item() for l in losses) / len(losses))
    bar.set_description(f"loss {history[-1]:.4f} T {t.item():.3f}")
    if not math.isfinite(history[-1]):
      fail(f"loss became {history[-1]} in epoch {epoch + 1}; the last good checkpoint ({checkpoint}) is untouched")
    if (epoch + 1) % FIGURE_EVERY == 0 or epoch + 1 == args.epochs or interrupted:
      save_checkpoint(checkpoint, model, opt, epoch + 1, config(args), history)
    if interrupted: sys.exit(f"interrupted: saved epoch {epoch + 1} to {checkpoint}; continue with the same flags and --resume")
    if (epoch + 1) % FIGURE_EVERY == 0 or epoch + 1 == args.epochs:
      triptych(model, data, args.samples, os.path.join(args.out, f"triptych_{epoch + 1:04d}.png"))
  signal.signal(signal.SIGINT, signal.default_int_handler)
  metrics, _, novel_sdf = evaluate(model, data, args.samples)
  metrics.update(epochs=args.epochs, wall_seconds=round(time.perf_counter() - start, 1), device=Device.DEFAULT, loss_history=history)
  novel_grid(data, novel_sdf, os.path.join(args.out, "novel_views.png"))
  with open(os.path.join(args.out, "metrics.json"), "w") as f: json.dump(metrics, f, indent=2)
  print(json.dumps({k: v for k, v in metrics.items() if k != "loss_history"}))

def evaluate_checkpoint(path:str):
  if not os.path.isfile(path): fail(f"no checkpoint at {path}")
  try: cfg = json.loads(nn.state.safe_load_metadata(path)[2]["__metadata__"]["config"])
  except Exception: fail(f"{path} is not a Mini SDF-SRN checkpoint (safetensors with a config)")
  model = SDFSRN(cfg["res"])
  try: load_checkpoint(path, model)
  except Exception as e: fail(f"{path} does not fit this model: {e}")
  metrics = evaluate(model, shapes.make_dataset(cfg["shapes"], cfg["res"], cfg["seed"]), cfg["samples"])[0]
  print(json.dumps(metrics | dict(device=Device.DEFAULT)))

def fail(message:str): sys.exit(f"error: {message}")

if __name__ == "__main__":
  parser = argparse.ArgumentParser(description="Train Mini SDF-SRN on synthetic shapes from single-view silhouettes.")
  parser.add_argument("--epochs", type=int, default=EPOCHS)
  parser.add_argument("--shapes", type=int, default=SHAPES)
  parser.add_argument("--res", type=int, default=RES)
  parser.add_argument("--samples", type=int, default=SAMPLES)
  parser.add_argument("--seed", type=int, default=SEED)
  parser.add_argument("--out", default="out", help="where checkpoint, figures and metrics.json go")
  parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
  parser.add_argument("--eval", metavar="CKPT", help="evaluate a checkpoint, print its metrics as JSON, train nothing")
  args = parser.parse_args()
  if args.epochs < 1 or args.shapes < 1 or args.samples < 2: parser.error("--epochs, --shapes must be >= 1 and --samples >= 2")
  if args.res < 16 or args.res % 16: parser.error("--res must be a multiple of 16 (four stride-2 convolutions and 4x4 ray blocks)")
  try: Tensor([1.0]).realize()
  except Exception as e: fail(f"tinygrad cannot start device {os.environ.get('DEV', 'default')} ({type(e).__name__}: {e}); the CPU device needs clang "
                              "(apt-get install clang), or pick another with DEV=CPU/CUDA/METAL/...")
  if args.eval: evaluate_checkpoint(args.eval)
  else:
    try: os.makedirs(args.out, exist_ok=True)
    except OSError as e: fail(f"cannot write to {args.out}: {e}")
    train(args)
