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
from PIL import Image, ImageDraw, UnidentifiedImageError
from tinygrad import Tensor, TinyJit, Device, Context, nn
from tinygrad.helpers import tqdm
import render, shapes
from sdfsrn import SDFSRN

# B images per step, S shapes, V views, R rays per image per step, P = H*W pixels, N samples per ray, L latent size
EPOCHS, SHAPES, RES, SAMPLES, SEED = 300, 50, 64, 24, 0
BATCH = 10
BLOCK = 4                                  # one random ray in every BLOCKxBLOCK pixel block per step: R = P / BLOCK^2
LR = 1e-3                                  # Adam's, held while the temperature anneals, then cosine-decayed towards 0
T_START, T_END = 0.05, 0.01                # temperature annealed geometrically over the first third of training
FIGURE_EVERY = 50                          # epochs between triptych figures and checkpoints
FIGURE_SHAPES = 6
CHUNK = 4                                  # views rendered at once when evaluating full images
HELD_OUT = 15                              # shapes drawn with seed + 1 and never trained on, to measure generalisation
TURNTABLE_FRAMES = 24                      # frames of the 360-degree turntable GIF
GRID = 64                                  # SDF grid over the bounding cube for volumetric IoU and meshes
SURFACE_POINTS = 5000                      # points on each surface for Chamfer-L1 and F-score
F_THRESHOLDS = (0.02, 0.05)                # F-score distance thresholds, world units (the bounding sphere has radius 1)

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

def learning_rate(epoch:int, epochs:int) -> float:
  progress = max(0.0, (epoch - epochs // 3) / max(1, epochs - epochs // 3))
  return LR * 0.5 * (1 + math.cos(math.pi * progress))

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

def silhouette_metrics(model:SDFSRN, data:dict, samples:int) -> tuple[dict, np.ndarray, np.ndarray]:
  """Training-view MSE (soft silhouette at T_END) and IoU, novel-view IoU, all and per family; the latents [S,L] and the
  novel views' min_sdf [S,V,P]."""
  S, V, res = len(data["images"]), data["novel_poses"].shape[1], data["images"].shape[-1]
  latent = model.encoder(Tensor(data["images"])).numpy()                                                     # [S,L]
  train_sdf = render_views(model, latent, *view_rays(data["poses"], res), samples)                          # [S,P]
  novel_sdf = render_views(model, latent.repeat(V, 0), *view_rays(data["novel_poses"], res), samples).reshape(S, V, -1)
  soft = render.silhouette(Tensor(train_sdf), T_END).numpy()                                                # [S,P]
  truth, novel_truth = data["silhouettes"].reshape(S, -1), data["novel_silhouettes"].reshape(S, V, -1)
  metrics = dict(train_mse=float(((soft - truth) ** 2).mean()), train_iou=iou(train_sdf < 0, truth),
                 novel_iou=iou((novel_sdf < 0).reshape(S * V, -1), novel_truth.reshape(S * V, -1)))
  for family in shapes.FAMILIES:
    mine = np.array([s["family"] == family for s in data["shapes"]])
    if mine.any(): metrics[f"novel_iou_{family}"] = iou((novel_sdf[mine] < 0).reshape(-1, res * res), novel_truth[mine].reshape(-1, res * res))
  return metrics, latent, novel_sdf

def evaluate(model:SDFSRN, data:dict, samples:int, seed:int, rotate:bool) -> tuple[dict, np.ndarray, list]:
  """Everything in metrics.json: silhouettes of the training shapes, of HELD_OUT shapes never trained on (drawn with
  another seed, seen once through their input image), and the 3-D metrics against the analytic shapes."""
  metrics, latent, novel_sdf = silhouette_metrics(model, data, samples)
  held_out = silhouette_metrics(model, shapes.make_dataset(HELD_OUT, data["images"].shape[-1], seed + 1, rotate), samples)[0]
  metrics |= dict(novel_minus_train_iou=metrics["novel_iou"] - metrics["train_iou"], held_out_shapes=HELD_OUT,
                  held_out_train_iou=held_out["train_iou"], held_out_novel_iou=held_out["novel_iou"])
  predicted, baseline, meshes = evaluate_3d(predicted_grids(model, latent), data["shapes"], seed)
  return metrics | predicted | {f"sphere_baseline_{k}": v for k, v in baseline.items()}, novel_sdf, meshes

# *** 3-D evaluation: the shapes are analytic, so the true surface is known exactly ***

def grid_points() -> np.ndarray:
  axis = ((np.arange(GRID) + 0.5) / GRID * 2 - 1) * render.BOUND                                   # cell centres
  return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).astype(np.float32)             # [G,G,G,3]

def predicted_grids(model:SDFSRN, latent:np.ndarray) -> np.ndarray:
  """The decoder's SDF on the grid for each latent [S,L] -> [S,G,G,G], one shape per jitted call."""
  @TinyJit
  def one(latent:Tensor, point:Tensor) -> Tensor: return model.decoder(latent, point).realize()   # [1,G^3]
  point = Tensor(grid_points().reshape(1, -1, 3)).realize()
  return np.stack([one(Tensor(z[None]), point).numpy().reshape(GRID, GRID, GRID) for z in latent])

def surface_nets(sdf:np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mesh of the zero set of a grid SDF [G,G,G] sampled at grid_points(): one vertex in every cube of 8 samples whose
  signs differ, at the mean of its edge crossings; two triangles for every grid edge whose sign changes, joining the
  four cubes around it, wound so normals point outside. Vertices [V,3], triangles [F,3]; closed if the surface
  stays inside the grid."""
  n = sdf.shape[0]
  corner = np.array([(i, j, k) for i in (0, 1) for j in (0, 1) for k in (0, 1)])                  # [8,3]
  edge = np.array([(a, b) for a in range(8) for b in range(a + 1, 8) if np.abs(corner[a] - corner[b]).sum() == 1])   # [12,2]
  value = np.stack([sdf[i:n - 1 + i, j:n - 1 + j, k:n - 1 + k] for i, j, k in corner], -1)          # [C,C,C,8] C = G-1 cubes
  sa, sb = value[..., edge[:, 0]], value[..., edge[:, 1]]                                         # [C,C,C,12]
  cross = (sa < 0) != (sb < 0)
  t = np.where(cross, sa / np.where(cross, sa - sb, 1), 0)[..., None]                               # [C,C,C,12,1]
  point = corner[edge[:, 0]] + t * (corner[edge[:, 1]] - corner[edge[:, 0]])                       # [C,C,C,12,3]
  count = cross.sum(-1)                                                                             # [C,C,C]
  active = count > 0
  local = (point * cross[..., None]).sum(-2)[active] / count[active, None]                          # [V,3] inside its cube
  vertices = ((np.argwhere(active) + local + 0.5) / n * 2 - 1) * render.BOUND
  index = np.full(count.shape, -1); index[active] = np.arange(active.sum())
  faces = []
  for a in range(3):   # edges along axis a; (a, b, c) is a cyclic order, so the quad below winds around +a
    b, c = (a + 1) % 3, (a + 2) % 3
    inside, cube = (sdf < 0).transpose(a, b, c), index.transpose(a, b, c)
    start = inside[:-1, 1:-1, 1:-1]
    p = np.argwhere(start != inside[1:, 1:-1, 1:-1])                                                # [E,3] edge p -> p + e_a
    quad = np.stack([cube[p[:, 0], p[:, 1] + db, p[:, 2] + dc] for db, dc in ((0, 0), (1, 0), (1, 1), (0, 1))], -1)
    quad = np.where(start[tuple(p.T)][:, None], quad, quad[:, ::-1])                                # inside -> outside is +a
    faces += [quad[:, [0, 1, 2]], quad[:, [0, 2, 3]]]
  return vertices.astype(np.float32), np.concatenate(faces)

def mesh_points(vertices:np.ndarray, faces:np.ndarray, n:int, rng:np.random.Generator) -> np.ndarray:
  """n points [n,3] uniform by area on a triangle mesh."""
  v0, v1, v2 = (vertices[faces[:, i]] for i in range(3))                                            # [F,3] each
  area = np.linalg.norm(np.cross(v1 - v0, v2 - v0), axis=-1)
  f = rng.choice(len(faces), n, p=area / area.sum())
  u, v = rng.uniform(size=(2, n, 1))
  u, v = np.where(u + v > 1, 1 - u, u), np.where(u + v > 1, 1 - v, v)                              # fold into the triangle
  return v0[f] + u * (v1[f] - v0[f]) + v * (v2[f] - v0[f])

def nearest(a:np.ndarray, b:np.ndarray) -> np.ndarray:
  """Distance from each point of a [n,3] to its nearest point of b [m,3]: |x-y|^2 = |x|^2 + |y|^2 - 2x.y as one matrix
  product per 1000 rows."""
  b2 = (b * b).sum(-1)
  return np.concatenate([np.sqrt(np.maximum((x * x).sum(-1) + (b2 - 2 * x @ b.T).min(-1), 0)) for x in np.array_split(a, max(1, len(a) // 1000))])

def surface_metrics(to_true:np.ndarray, to_predicted:np.ndarray) -> dict:
  """Chamfer-L1 (the mean of both directions' mean distance) and F-scores from the distances of predicted surface
  points to the true surface and of true surface points to the predicted surface, world units."""
  out = dict(chamfer_l1=float((to_true.mean() + to_predicted.mean()) / 2))
  for tau in F_THRESHOLDS:
    precision, recall = (to_true < tau).mean(), (to_predicted < tau).mean()
    out[f"fscore_{tau}"] = float(2 * precision * recall / max(precision + recall, 1e-9))
  return out

def evaluate_3d(pred_grid:np.ndarray, shape_list:list[dict], seed:int) -> tuple[dict, dict, list]:
  """Volumetric IoU on the grid, Chamfer-L1 and F-scores for the prediction and for the best single origin-centred
  sphere for each shape (chosen by volumetric IoU with the true shape: an oracle, so a strong baseline). Distances to
  the true surface are its analytic |SDF|; distances to the predicted surface go to the nearest of 4x as many points
  sampled on its mesh. Means over shapes, and the meshes."""
  rng, grid = np.random.default_rng(seed), grid_points()
  norm, radii = np.linalg.norm(grid, axis=-1), np.linspace(0.05, render.BOUND, 96)
  rows, base, meshes = [], [], []
  for sdf, shape in zip(pred_grid, shape_list):
    truth = shapes.shape_sdf(shape, grid) < 0                                                        # [G,G,G]
    vol_iou = lambda mask: float((mask & truth).sum() / max((mask | truth).sum(), 1))
    true_points = shapes.surface_points(shape, SURFACE_POINTS, rng)                                 # [n,3]
    meshes.append(surface_nets(sdf))                                                                 # empty if no sign change
    if len(meshes[-1][1]):
      points = mesh_points(*meshes[-1], 4 * SURFACE_POINTS, rng)
      rows.append(dict(volume_iou=vol_iou(sdf < 0)) | surface_metrics(np.abs(shapes.shape_sdf(shape, points)), nearest(true_points, points)))
    else: rows.append(dict(volume_iou=vol_iou(sdf < 0), chamfer_l1=float("nan")) | {f"fscore_{t}": 0.0 for t in F_THRESHOLDS})
    r = max(radii, key=lambda r: vol_iou(norm < r))
    sphere = shapes.surface_points(dict(family="sphere", rotation=np.eye(3), size=np.full(3, r)), SURFACE_POINTS, rng)
    base.append(dict(volume_iou=vol_iou(norm < r)) | surface_metrics(np.abs(shapes.shape_sdf(shape, sphere)), np.abs(np.linalg.norm(true_points, axis=-1) - r)))
  mean = lambda rows: {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
  return mean(rows), mean(base), meshes

def save_obj(path:str, vertices:np.ndarray, faces:np.ndarray):
  with open(path, "w") as f:
    f.write("".join(f"v {x:.5f} {y:.5f} {z:.5f}\n" for x, y, z in vertices) + "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in faces))

# *** figures ***

def tile(rows:list[list[np.ndarray]], scale:int=2) -> Image.Image:
  """Tile [H,W] gray or [H,W,3] colour images in [0,1] into a grid with 2-pixel gutters."""
  rgb = lambda x: np.repeat(x[..., None], 3, -1) if x.ndim == 2 else x
  h, w = rows[0][0].shape[:2]
  grid = np.ones(((h + 2) * len(rows), (w + 2) * max(len(r) for r in rows), 3), np.float32)
  for i, row in enumerate(rows):
    for j, x in enumerate(row): grid[i * (h + 2):i * (h + 2) + h, j * (w + 2):j * (w + 2) + w] = rgb(x)
  return Image.fromarray((grid.clip(0, 1) * 255).astype(np.uint8)).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)

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
  tile(rows).save(path)

def novel_grid(data:dict, novel_sdf:np.ndarray, path:str):
  res, rows = data["images"].shape[-1], []
  for s in range(len(novel_sdf)):
    pairs = [[data["novel_silhouettes"][s, v], (novel_sdf[s, v] < 0).reshape(res, res).astype(np.float32)] for v in range(novel_sdf.shape[1])]
    rows.append([data["images"][s].transpose(1, 2, 0)] + [x for pair in pairs for x in pair])
  tile(rows, scale=1).save(path)

def turntable(model:SDFSRN, data:dict, samples:int, path:str):
  """GIF of the first shape of each family spinning at 20 degrees elevation: ground truth beside prediction."""
  first = [next(i for i, s in enumerate(data["shapes"]) if s["family"] == f) for f in shapes.FAMILIES if any(s["family"] == f for s in data["shapes"])]
  res, azimuth = data["images"].shape[-1], np.arange(TURNTABLE_FRAMES) * 360 / TURNTABLE_FRAMES
  poses = np.stack([np.stack([azimuth, np.full_like(azimuth, 20.0)], 1)] * len(first))                     # [F,T,2]
  latent = model.encoder(Tensor(data["images"][first])).numpy().repeat(TURNTABLE_FRAMES, 0)
  pred = (render_views(model, latent, *view_rays(poses, res), samples) < 0).reshape(len(first), TURNTABLE_FRAMES, res, res)
  frames = [tile([[x for k, s in enumerate(first) for x in (shapes.render_view(data["shapes"][s], *poses[k, t], res)[1], pred[k, t].astype(np.float32))]])
            for t in range(TURNTABLE_FRAMES)]
  frames[0].save(path, save_all=True, append_images=frames[1:], duration=80, loop=0)

def loss_curve(history:list[float], metrics:dict, path:str, size=(640, 360), margin=50):
  """Training loss per epoch on a log scale, with the final silhouette metrics written in."""
  image = Image.new("RGB", size, "white")
  draw, (w, h) = ImageDraw.Draw(image), size
  low, high = np.log10(min(history)), np.log10(max(history))
  xy = [(margin + (w - 2 * margin) * i / max(1, len(history) - 1), h - margin - (h - 2 * margin) * (np.log10(l) - low) / max(high - low, 1e-9))
        for i, l in enumerate(history)]
  draw.line([(margin, margin), (margin, h - margin), (w - margin, h - margin)], fill="black")
  draw.line(xy, fill=(200, 60, 40), width=2)
  draw.text((margin, h - margin + 8), f"epoch 1 .. {len(history)}", fill="black")
  draw.text((4, margin - 20), f"training loss (BCE on -min_sdf/T), log scale {10 ** high:.3g} .. {10 ** low:.3g}", fill="black")
  draw.text((w // 2, margin), "\n".join(f"{k} {metrics[k]:.4f}" for k in ("train_mse", "train_iou", "novel_iou", "held_out_novel_iou") if k in metrics), fill="black")
  image.save(path)

# *** checkpoints: safetensors only (loading one cannot run code), written to a temporary file and renamed ***

def config(args) -> dict: return dict(shapes=args.shapes, res=args.res, samples=args.samples, seed=args.seed, epochs=args.epochs, rotate=args.rotate)

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

def batches(rng:np.random.Generator, count:int, res:int) -> list[tuple[Tensor, Tensor]]:
  """One epoch: each of count shapes once in a random order, batch by batch, with one random pixel per block [B,R]."""
  order, batch = rng.permutation(count), min(BATCH, count)
  return [(Tensor(order[i * batch:(i + 1) * batch].astype(np.int32)), Tensor(rng.integers(0, BLOCK * BLOCK, (batch, (res // BLOCK) ** 2), dtype=np.int32)))
          for i in range(count // batch)]

def train(args):
  start = time.perf_counter()
  make_out(args.out)
  data = shapes.make_dataset(args.shapes, args.res, args.seed, args.rotate)
  Tensor.manual_seed(args.seed)
  model = SDFSRN(args.res)
  opt = nn.optim.Adam(nn.state.get_parameters(model), lr=LR)
  step = make_step(model, opt, *device_data(data), args.samples)
  checkpoint, first, history = os.path.join(args.out, "model.safetensors"), 0, []
  if args.resume:
    if not os.path.isfile(checkpoint): fail(f"nothing to resume: no {checkpoint}")
    try: first, saved, history = load_checkpoint(checkpoint, model, opt)
    except Exception as e: fail(f"cannot resume from {checkpoint}: {type(e).__name__}: {e}")
    if saved != config(args): fail(f"{checkpoint} was trained with {saved}, not {config(args)}")
    print(f"resuming {checkpoint} after epoch {first}")
  # Ctrl-C lets the epoch in progress finish, so the checkpoint holds a whole number of epochs and --resume continues
  # exactly where a straight run would be
  interrupted = []
  signal.signal(signal.SIGINT, lambda *_: interrupted.append(print("\nfinishing this epoch, then saving...")))
  for epoch in (bar := tqdm(range(first, args.epochs), desc="train", total=args.epochs - first)):
    t = Tensor([temperature(epoch, args.epochs)])
    opt.lr.assign(Tensor([learning_rate(epoch, args.epochs)], dtype=opt.lr.dtype)).realize()   # a buffer the jitted step reads
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
  trained = time.perf_counter() - start
  metrics, novel_sdf, meshes = evaluate(model, data, args.samples, args.seed, args.rotate)
  metrics.update(epochs=args.epochs, train_seconds=round(trained, 1), wall_seconds=round(time.perf_counter() - start, 1),
                 device=Device.DEFAULT, loss_history=history)
  novel_grid(data, novel_sdf, os.path.join(args.out, "novel_views.png"))
  turntable(model, data, args.samples, os.path.join(args.out, "turntable.gif"))
  loss_curve(history, metrics, os.path.join(args.out, "loss_curve.png"))
  for i, mesh in enumerate(meshes[:FIGURE_SHAPES]): save_obj(os.path.join(args.out, f"shape_{i:02d}_{data['shapes'][i]['family']}.obj"), *mesh)
  with open(os.path.join(args.out, "metrics.json"), "w") as f: json.dump(metrics, f, indent=2)
  print(json.dumps({k: v for k, v in metrics.items() if k != "loss_history"}))

def load_for_eval(path:str) -> tuple[SDFSRN, dict]:
  if not os.path.isfile(path): fail(f"no checkpoint at {path}")
  try: cfg = json.loads(nn.state.safe_load_metadata(path)[2]["__metadata__"]["config"])
  except Exception: fail(f"{path} is not a Mini SDF-SRN checkpoint (safetensors with a config)")
  model = SDFSRN(cfg["res"])
  try: load_checkpoint(path, model)
  except Exception as e: fail(f"{path} does not fit this model: {e}")
  return model, cfg

def evaluate_checkpoint(path:str):
  model, cfg = load_for_eval(path)
  metrics = evaluate(model, shapes.make_dataset(cfg["shapes"], cfg["res"], cfg["seed"], cfg["rotate"]), cfg["samples"], cfg["seed"], cfg["rotate"])[0]
  print(json.dumps(metrics | dict(device=Device.DEFAULT)))

def reconstruct(path:str, image_path:str, out:str):
  """Encode a user's image (any size or mode: converted to RGB and resized like the training images) and write its
  silhouettes from the six standard novel azimuths at +-20 degrees and its mesh."""
  model, cfg = load_for_eval(path)
  try: image = Image.open(image_path).convert("RGB").resize((cfg["res"], cfg["res"]), Image.BILINEAR)
  except (OSError, UnidentifiedImageError) as e: fail(f"cannot read {image_path} as an image: {e}")
  pixels = (np.asarray(image, np.float32) / 255).transpose(2, 0, 1)[None]                                  # [1,3,H,W]
  make_out(out)
  latent, poses = model.encoder(Tensor(pixels)).numpy(), shapes.novel_poses(-30.0)                         # azimuths 0, 60, ...
  sdf = render_views(model, latent.repeat(len(poses), 0), *view_rays(poses, cfg["res"]), cfg["samples"])  # [V,P]
  name = os.path.splitext(os.path.basename(image_path))[0]
  tile([[pixels[0].transpose(1, 2, 0)] + [(x < 0).reshape(cfg["res"], cfg["res"]).astype(np.float32) for x in sdf]]).save(os.path.join(out, f"{name}_views.png"))
  vertices, faces = surface_nets(predicted_grids(model, latent)[0])
  if len(faces): save_obj(os.path.join(out, f"{name}.obj"), vertices, faces)
  print(f"wrote {os.path.join(out, name)}_views.png" + (f" and {name}.obj" if len(faces) else " (the predicted surface is empty: no mesh)"))

def fail(message:str): sys.exit(f"error: {message}")

def make_out(path:str):
  try: os.makedirs(path, exist_ok=True)
  except OSError as e: fail(f"cannot write to {path}: {e}")

if __name__ == "__main__":
  parser = argparse.ArgumentParser(description="Train Mini SDF-SRN on synthetic shapes from single-view silhouettes.")
  parser.add_argument("--epochs", type=int, default=EPOCHS)
  parser.add_argument("--shapes", type=int, default=SHAPES)
  parser.add_argument("--res", type=int, default=RES)
  parser.add_argument("--samples", type=int, default=SAMPLES)
  parser.add_argument("--seed", type=int, default=SEED)
  parser.add_argument("--rotate", action="store_true", help="boxes and ellipsoids in random orientations, not axis-aligned")
  parser.add_argument("--out", default="out", help="where checkpoint, figures and metrics.json go")
  parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
  parser.add_argument("--eval", metavar="CKPT", help="evaluate a checkpoint, print its metrics as JSON, train nothing")
  parser.add_argument("--image", help="with --eval: reconstruct this image instead; writes its views and mesh to --out")
  args = parser.parse_args()
  if args.epochs < 1 or args.shapes < 1 or args.samples < 2: parser.error("--epochs, --shapes must be >= 1 and --samples >= 2")
  if args.res < 16 or args.res % 16: parser.error("--res must be a multiple of 16 (four stride-2 convolutions and 4x4 ray blocks)")
  try: Tensor([1.0]).realize()
  except Exception as e: fail(f"tinygrad cannot start device {os.environ.get('DEV', 'default')} ({type(e).__name__}: {e}); the CPU device needs clang "
                              "(apt-get install clang), or pick another with DEV=CPU/CUDA/METAL/...")
  if args.image and not args.eval: parser.error("--image needs --eval CKPT")
  if args.image: reconstruct(args.eval, args.image, args.out)
  elif args.eval: evaluate_checkpoint(args.eval)
  else: train(args)
