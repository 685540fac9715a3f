# Score a trained Mini SDF-SRN: silhouettes on the training and novel views, shapes never trained on, and the 3-D
# metrics against the analytic shapes (volumetric IoU, Chamfer-L1, F-score, the best-sphere baseline); meshes and
# `--eval CKPT`. figures.py draws. Imports shapes, render and sdfsrn; never train.py.
import contextlib, json, multiprocessing, os, signal, time
from typing import Callable
import numpy as np
from tinygrad import Context, Device, Tensor, TinyJit
import fast, render, shapes
from cli import fail, log
from sdfsrn import SDFSRN, load_checkpoint, read_metadata

# S shapes, V views, P = H*W pixels, L latent size (a code: L, or L+2 with --pose), G grid cells per axis
CHUNK = 4                  # views rendered, or images encoded, at once when evaluating
HELD_OUT = 30              # shapes drawn with seed + 1 and never trained on, to measure generalisation
SCORED_SHAPES = 100        # training shapes scored (the first ones): evaluation costs no more past this
GRID = 64                  # SDF grid over the bounding cube for volumetric IoU and meshes
COARSE, MARGIN = 4, 3.0    # predicted_grids: blocks of COARSE^3 cells, refined within MARGIN of the surface
SURFACE_POINTS = 5000      # points on each true surface, for Chamfer-L1 and F-score ...
MESH_POINTS = 20000        # ... and on each predicted mesh
F_THRESHOLDS = (0.02, 0.05)   # F-score distance thresholds, world units (the bounding sphere has radius 1)
CHECK_SHAPES = 3           # shapes whose novel-view IoU train.py measures at each checkpoint (one per family)

# *** silhouettes on full images ***

def jit(fn:Callable) -> Callable:
  """TinyJit(fn) of numpy arrays of fixed shapes, written into the same input buffers every call (fast.write),
  replayed without device graphs (JIT=2): CUDA's graph has refused a kernel of these large renders."""
  jitted, inputs = TinyJit(fn), []
  def call(*arrays:np.ndarray) -> Tensor:
    if not inputs:
      inputs.extend(Tensor(x).realize() for x in arrays)
    with Context(JIT=2):
      return jitted(*fast.write(inputs, arrays))
  return call

def chunked(fn:Callable, *arrays:np.ndarray) -> np.ndarray:
  """fn over arrays [V,...], CHUNK rows at a time under one jit, so every count of rows runs kernels compiled once
  per process (the last chunk padded: a jit replays fixed shapes)."""
  def realized(*x:Tensor) -> Tensor:
    return fn(*x).realize()
  jitted, V, pad = jit(realized), len(arrays[0]), -len(arrays[0]) % CHUNK
  arrays = [np.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)) for x in arrays]
  out = [jitted(*(x[i:i + CHUNK] for x in arrays)).numpy() for i in range(0, V + pad, CHUNK)]
  return np.concatenate(out)[:V]

def encode(model:SDFSRN, images:np.ndarray, poses:np.ndarray) -> np.ndarray:
  """The codes [S,L] of input images [S,3,H,W] seen from poses [S,2] (azimuth, elevation in degrees)."""
  return chunked(model.encode, images, poses)

def over_disc(render_fn:Callable, origin:np.ndarray, direction:np.ndarray, background:float) -> np.ndarray:
  """render_fn(directions [V,P',3]) -> [V,P',...] for the views' rays (origins [V,3], directions [V,P,3]), made
  [V,P,...] at the cost of the pixels whose ray meets the bounding sphere (about 70%; every camera sits at the same
  distance facing the centre, so they are the same pixels in every view); the others are background."""
  disc = render.meets_bound(origin, direction).any(0)                                 # [P]
  part = render_fn(direction[:, disc])                                                # [V,P',...]
  out = np.full(direction.shape[:2] + part.shape[2:], background, part.dtype)
  out[:, disc] = part
  return out

def render_views(model:SDFSRN, code:np.ndarray, poses:np.ndarray, res:int, samples:int) -> np.ndarray:
  """min_sdf [V,P] of every pixel of the views poses [V,2] (or [S,V,2]) of the shapes code [V,L]; +inf where the
  ray misses."""
  origin, direction = shapes.view_rays(poses, res)                                    # [V,3] [V,P,3]
  def min_sdf(code:Tensor, origin:Tensor, direction:Tensor) -> Tensor:
    point = render.sample_points(origin.unsqueeze(1), direction, samples)              # [V,P',N,3]
    return model.sdf(code, point).min(-1)                                             # [V,P']
  def on_disc(direction:np.ndarray) -> np.ndarray:
    return chunked(min_sdf, code, origin, direction)
  return over_disc(on_disc, origin, direction, np.inf)                                # [V,P]

def iou(mask:np.ndarray, truth:np.ndarray) -> np.ndarray:
  """Intersection over union of hard masks [V,...] per view [V]; a view where both are empty counts 1."""
  mask, truth = mask.reshape(len(mask), -1) > 0.5, truth.reshape(len(truth), -1) > 0.5
  inter, union = (mask & truth).sum(-1), (mask | truth).sum(-1)
  return np.where(union > 0, inter / np.maximum(union, 1), 1.0)

def silhouette_metrics(model:SDFSRN, data:dict, samples:int) -> tuple[dict, np.ndarray, np.ndarray]:
  """Training-view MSE (soft, at the scoring temperature) and IoU, novel-view IoU overall and per family; the codes
  [S,L] and the novel views' min_sdf [S,V,P]."""
  S, V, res = len(data["images"]), data["novel_poses"].shape[1], data["images"].shape[-1]
  code = encode(model, data["images"], data["poses"])                                      # [S,L]
  train_sdf = render_views(model, code, data["poses"], res, samples)                       # [S,P]
  novel_sdf = render_views(model, code.repeat(V, 0), data["novel_poses"], res, samples)    # [S*V,P]
  novel_sdf = novel_sdf.reshape(S, V, -1)                                                  # [S,V,P]
  soft = render.silhouette(Tensor(train_sdf), render.SCORE_TEMPERATURE).numpy()           # [S,P]
  truth = data["silhouettes"].reshape(S, -1)                                               # [S,P]
  novel_truth = data["novel_silhouettes"].reshape(S * V, -1)                               # [S*V,P]
  novel = iou((novel_sdf < 0).reshape(S * V, -1), novel_truth).reshape(S, V)               # [S,V]
  metrics = dict(train_mse=float(((soft - truth) ** 2).mean()), train_iou=float(iou(train_sdf < 0, truth).mean()),
                 novel_iou=float(novel.mean()))
  families = np.array([s["family"] for s in data["shapes"]])                              # [S]
  for f in shapes.FAMILIES:
    if (families == f).any():
      metrics[f"novel_iou_{f}"] = float(novel[families == f].mean())
  metrics["novel_iou_per_shape"] = novel.mean(1).tolist()
  return metrics, code, novel_sdf

def score(model:SDFSRN, data:dict, samples:int, seed:int, name:str) -> tuple[dict, np.ndarray, list]:
  """The silhouette metrics and the 3-D ones (the best sphere's beside them) of the shapes of data; the novel views'
  min_sdf and the meshes."""
  start, S = time.perf_counter(), len(data["images"])
  metrics, code, novel_sdf = silhouette_metrics(model, data, samples)
  log(f"evaluate: {S} {name} shapes: silhouettes in {1 + data['novel_poses'].shape[1]} views "
      f"({time.perf_counter() - start:.0f} s)")
  predicted, baseline, meshes = evaluate_3d(predicted_grids(model, code), data["shapes"], seed)
  log(f"evaluate: {S} {name} shapes: 3-D metrics and meshes ({time.perf_counter() - start:.0f} s)")
  metrics["novel_minus_train_iou"] = metrics["novel_iou"] - metrics["train_iou"]
  metrics |= predicted
  metrics |= {f"sphere_baseline_{k}": v for k, v in baseline.items()}
  return metrics, novel_sdf, meshes

def evaluate(model:SDFSRN, data:dict, samples:int, seed:int) -> tuple[dict, np.ndarray, list]:
  """Everything in metrics.json about the first SCORED_SHAPES training shapes; their novel views' min_sdf and
  meshes, for the figures."""
  return score(model, {k: v[:SCORED_SHAPES] for k, v in data.items()}, samples, seed, "training")

def held_out_data(res:int, seed:int, rotate:bool) -> dict:
  return shapes.make_dataset(HELD_OUT, res, seed + 1, rotate)

def held_out(model:SDFSRN, res:int, samples:int, seed:int, rotate:bool) -> tuple[dict, dict]:
  """The same metrics, named held_out_..., of HELD_OUT shapes never trained on (drawn with seed + 1, each seen once
  through its input image), to measure generalisation; and their data, for the turntable."""
  data = held_out_data(res, seed, rotate)
  metrics = score(model, data, samples, seed + 1, "held-out")[0]
  del metrics["novel_iou_per_shape"]
  metrics = {f"held_out_{k}": v for k, v in metrics.items()}
  return metrics | dict(held_out_shapes=HELD_OUT), data

# *** 3-D evaluation: the shapes are analytic, so the true surface is known exactly ***

def grid_points() -> np.ndarray:
  axis = ((np.arange(GRID) + 0.5) / GRID * 2 - 1) * render.BOUND                       # cell centres
  return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).astype(np.float32)   # [G,G,G,3]

def predicted_grids(model:SDFSRN, code:np.ndarray) -> np.ndarray:
  """The decoder's SDF on the grid for each code [S,L] -> [S,G,G,G], coarse to fine: at the centre of every block of
  COARSE^3 cells, then at each cell of the blocks whose centre is within MARGIN times its farthest cell of the
  surface; the others take their block's value, which has their sign if the SDF changes at most MARGIN times as fast
  as a distance (a trained one: at most 1.9; tests check it). The same IoU and meshes as the whole grid, in half the
  time."""
  B, C = GRID // COARSE, COARSE            # blocks a side, cells a block side
  M = B ** 3                               # points a call
  def sdf(z:Tensor, point:Tensor) -> Tensor:
    return model.sdf(z, point).realize()   # [1,M] at points [1,M,3]
  jitted = jit(sdf)
  def decode(z:np.ndarray, point:np.ndarray) -> np.ndarray:
    """The SDF [n] of code z [L] at points [n,3]."""
    chunks = np.pad(point, ((0, -len(point) % M), (0, 0))).reshape(-1, 1, M, 3)
    return np.concatenate([jitted(z[None], p).numpy()[0] for p in chunks])[:len(point)]
  cells = grid_points().reshape(B, C, B, C, B, C, 3).transpose(0, 2, 4, 1, 3, 5, 6)
  cells = cells.reshape(B ** 3, C ** 3, 3)                                                   # [B^3,C^3,3] by block
  centres = cells.mean(1)                                                                    # [B^3,3]
  reach = MARGIN * np.sqrt(3) * (C - 1) / 2 * 2 * render.BOUND / GRID   # MARGIN x centre to farthest cell
  def grid(z:np.ndarray) -> np.ndarray:
    """[G,G,G] of code z [L]."""
    coarse = decode(z, centres)                                                              # [B^3]
    value = np.repeat(coarse[:, None], C ** 3, 1)                                            # [B^3,C^3]
    near = np.abs(coarse) < reach                                                            # [B^3]
    value[near] = decode(z, cells[near].reshape(-1, 3)).reshape(-1, C ** 3)
    return value.reshape(B, B, B, C, C, C).transpose(0, 3, 1, 4, 2, 5).reshape(GRID, GRID, GRID)
  return np.stack([grid(z) for z in code])

def mesh_points(vertices:np.ndarray, faces:np.ndarray, n:int, rng:np.random.Generator) -> np.ndarray:
  """n points [n,3] uniform by area on a triangle mesh."""
  v0, v1, v2 = (vertices[faces[:, i]] for i in range(3))                                     # [F,3] each
  area = np.linalg.norm(np.cross(v1 - v0, v2 - v0), axis=-1)
  f = rng.choice(len(faces), n, p=area / area.sum())
  u, v = rng.uniform(size=(2, n, 1))
  u, v = np.where(u + v > 1, 1 - u, u), np.where(u + v > 1, 1 - v, v)                       # fold into the triangle
  return v0[f] + u * (v1[f] - v0[f]) + v * (v2[f] - v0[f])

def nearest(a:np.ndarray, b:np.ndarray) -> np.ndarray:
  """Distance [n] from each point of a [n,3] to its nearest point of b [m,3], in float32 on the device: tinygrad fuses
  the differences, their squares and the min into one kernel, so no [n,m] matrix is ever held."""
  a, b = Tensor(a.astype(np.float32)), Tensor(b.astype(np.float32))
  return ((a.unsqueeze(1) - b) ** 2).sum(-1).min(-1).sqrt().numpy()                        # [n]

def surface_metrics(to_true:np.ndarray, to_predicted:np.ndarray) -> dict:
  """Chamfer-L1 (the mean of both directions' mean distance) and F-scores from the distances predicted -> true
  surface and back."""
  out = dict(chamfer_l1=float((to_true.mean() + to_predicted.mean()) / 2))
  for tau in F_THRESHOLDS:
    precision, recall = (to_true < tau).mean(), (to_predicted < tau).mean()
    out[f"fscore_{tau}"] = float(2 * precision * recall / max(precision + recall, 1e-9))
  return out

def mean(table:list[dict]) -> dict:
  """The mean of each column of a table of rows; None where a row has None."""
  out = {}
  for key in table[0]:
    column = [row[key] for row in table]
    out[key] = None if None in column else float(np.mean(column))
  return out

def evaluate_3d(pred_grid:np.ndarray, shape_list:list[dict], seed:int) -> tuple[dict, dict, list]:
  """Volumetric IoU, Chamfer-L1 and F-scores of the prediction and of the best origin-centred sphere for each shape
  (by volumetric IoU with the truth: an oracle, so a strong baseline), averaged over shapes (Chamfer None if a
  prediction is empty); the meshes. Distances to the true surface are its analytic |SDF|, to the predicted surface
  the nearest of MESH_POINTS sampled on its mesh."""
  rng, grid, rows, base, meshes = np.random.default_rng(seed), grid_points(), [], [], []
  # a sphere of radius r holds the cells with |x| < r: with the cells sorted by |x|, its IoU for every r at once
  radius = np.linalg.norm(grid, axis=-1).ravel()                                 # [G^3]
  order = np.argsort(radius, kind="stable")                                      # [G^3] the cells by |x|
  norm, k = radius[order], np.arange(1, len(radius) + 1)                         # [G^3] their |x|; k cells
  whole = np.append(norm[1:] > norm[:-1], True)                                  # [G^3] k ends a shell of equal |x|
  for sdf, shape in zip(pred_grid, shape_list):
    truth = shapes.shape_sdf(shape, grid) < 0                                    # [G,G,G]
    true_points = shapes.surface_points(shape, SURFACE_POINTS, rng)             # [n,3]
    meshes.append(render.surface_nets(sdf))                                      # empty if no sign change
    row = dict(volume_iou=float(iou((sdf < 0)[None], truth[None])[0]))
    if len(meshes[-1][1]):
      points = mesh_points(*meshes[-1], MESH_POINTS, rng)                        # [MESH_POINTS,3]
      rows.append(row | surface_metrics(np.abs(shapes.shape_sdf(shape, points)), nearest(true_points, points)))
    else:
      rows.append(row | dict(chamfer_l1=None) | {f"fscore_{t}": 0.0 for t in F_THRESHOLDS})
    inside = np.cumsum(truth.ravel()[order])                                     # [G^3] truth cells among the k nearest
    best = int(np.argmax(np.where(whole, inside / (truth.sum() + k - inside), -1)))
    r = float(norm[best] + norm[min(best + 1, len(norm) - 1)]) / 2
    sphere_shape = dict(family="sphere", rotation=np.eye(3), size=np.full(3, r))
    sphere = shapes.surface_points(sphere_shape, SURFACE_POINTS, rng)
    sphere_iou = float(inside[best] / (truth.sum() + best + 1 - inside[best]))
    to_true = np.abs(shapes.shape_sdf(shape, sphere))
    to_sphere = np.abs(np.linalg.norm(true_points, axis=-1) - r)
    base.append(dict(volume_iou=sphere_iou) | surface_metrics(to_true, to_sphere))
  predicted = mean(rows)
  families = [shape["family"] for shape in shape_list]
  for family in shapes.FAMILIES:
    if family in families:
      ious = [row["volume_iou"] for row, f in zip(rows, families) if f == family]
      predicted[f"volume_iou_{family}"] = float(np.mean(ious))
  return predicted, mean(base), meshes

def save_obj(path:str, vertices:np.ndarray, faces:np.ndarray):
  lines = [f"v {x:.5f} {y:.5f} {z:.5f}\n" for x, y, z in vertices]
  lines += [f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in faces]
  with open(path, "w") as f:
    f.write("".join(lines))

# *** a metric cheap enough for every checkpoint ***

def checkpoint_iou(model:SDFSRN, data:dict, samples:int) -> float:
  """Novel-view IoU of the first CHECK_SHAPES shapes, for the loss curve."""
  return silhouette_metrics(model, {k: v[:CHECK_SHAPES] for k, v in data.items()}, samples)[0]["novel_iou"]

# *** a checkpoint from the command line: --eval ***

def load_for_eval(path:str, quiet:bool=False) -> tuple[SDFSRN, dict]:
  """The model of a checkpoint, with the fast layers, and the configuration it was trained with."""
  if not quiet:
    log(f"device {Device.DEFAULT}; reading {path}")
  if not os.path.isfile(path):
    fail(f"no checkpoint at {path}")
  try:
    config = read_metadata(path)[1]
  except Exception:
    fail(f"{path} is not a Mini SDF-SRN checkpoint (safetensors with a config)")
  model = SDFSRN(config["res"], symmetric=config.get("symmetric", False), pose=config.get("pose"))
  fast.install(model)
  try:
    load_checkpoint(path, model)
  except Exception as e:
    fail(f"{path} does not fit this model: {e}")
  return model, config

def held_out_of(path:str) -> dict:
  """--eval's second process: the held-out metrics of its own copy of the checkpoint."""
  model, config = load_for_eval(path, quiet=True)
  return held_out(model, config["res"], config["samples"], config["seed"], config["rotate"])[0]

def evaluate_checkpoint(path:str, workers:int=1):
  """--eval: with more than one worker (the default on the CPU) the held-out shapes are scored in a second process
  while the training shapes are scored here; it ignores Ctrl-C, which is this process's, and ends with it."""
  model, config = load_for_eval(path)
  context = multiprocessing.get_context("spawn")
  ignore_ctrl_c = (signal.SIGINT, signal.SIG_IGN)
  second = context.Pool(1, signal.signal, ignore_ctrl_c) if workers > 1 else contextlib.nullcontext()
  with second:
    later = second.apply_async(held_out_of, (path,)) if workers > 1 else None
    data = shapes.make_dataset(config["shapes"], config["res"], config["seed"], config["rotate"])
    metrics = evaluate(model, data, config["samples"], config["seed"])[0]
    if later is not None:
      metrics |= later.get()
    else:
      metrics |= held_out(model, config["res"], config["samples"], config["seed"], config["rotate"])[0]
  print(json.dumps(metrics | dict(device=Device.DEFAULT)))

# *** the pose-blind ceiling: how well any model that is not told the input view's pose can do on new shapes ***

def volume_iou(family:str, size:np.ndarray, others:np.ndarray, points:np.ndarray) -> np.ndarray:
  """Volumetric IoU [K] of an axis-aligned shape of a family with half-extents size [3] against others [K,3]: exact
  for boxes (two centred boxes meet in a box), for ellipsoids counted over points [n,3] uniform in [-1,1]^3."""
  if family == "box":
    inter = np.prod(np.minimum(size, others), -1)                                       # [K]
    return inter / (np.prod(size) + np.prod(others, -1) - inter)
  inside = ((points / size) ** 2).sum(-1) < 1                                           # [n]
  other = ((points[None] / others[:, None]) ** 2).sum(-1) < 1                           # [K,n]
  return (other & inside).sum(-1) / np.maximum((other | inside).sum(-1), 1)

def pose_blind_ceiling(count:int=300, seed:int=0, steps:int=9, samples:int=40000) -> dict:
  """The best volumetric IoU a model can expect on a new box or ellipsoid (a,b,c) when its image is also that of the
  twin (c,b,a) seen a quarter-turn later, each equally likely: the better of committing to one twin (IoU 1 or the
  twins' IoU) and the best single guess (p,b,q) for both, p and q on a grid of steps values from min(a,c) to
  max(a,c). Monte Carlo over count shapes of each family from the data's size ranges (ellipsoids over samples
  points); the mean and its standard error by family, and over the three families with spheres (never ambiguous) 1."""
  rng = np.random.default_rng(seed)
  points = rng.uniform(-1, 1, (samples, 3))
  out, means = {}, [1.0]
  for family in ("box", "ellipsoid"):
    best = []
    for _ in range(count):
      size = rng.uniform(*shapes.SIZES[family], 3)
      twin = size[::-1]
      grid = np.linspace(min(size[0], size[2]), max(size[0], size[2]), steps)
      guesses = np.array([[p, size[1], q] for p in grid for q in grid] + [twin])        # [K,3], the twin last
      score = (volume_iou(family, size, guesses, points) + volume_iou(family, twin, guesses, points)) / 2
      best.append(float(score.max()))   # the twin's score is committing: (1 + the twins' IoU) / 2
    out[f"{family}_volume_iou"] = float(np.mean(best))
    out[f"{family}_standard_error"] = float(np.std(best) / np.sqrt(count))
    means.append(np.mean(best))
  out["volume_iou_over_families"] = float(np.mean(means))
  return out

if __name__ == "__main__":   # python evaluate.py: the pose-blind ceiling (docs/experiments.md)
  print(json.dumps(pose_blind_ceiling()))
