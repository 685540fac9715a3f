# Score and draw a trained Mini SDF-SRN: silhouettes on the training and novel views, shapes never trained on, and the
# 3-D metrics against the analytic shapes (volumetric IoU, Chamfer-L1, F-score, the best-sphere baseline); meshes,
# figures, `--eval CKPT` and `--image PHOTO`. Imports shapes, render and sdfsrn; never train.py.
import json, os, sys, time
import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError
from tinygrad import Tensor, TinyJit, Device
import render, shapes
from sdfsrn import SDFSRN, load_checkpoint, read_config

# S shapes, V views, P = H*W pixels, L latent size, G grid cells per axis
CHUNK = 4                                  # views rendered at once when evaluating full images
HELD_OUT = 30                              # shapes drawn with seed + 1 and never trained on, to measure generalisation
SCORED_SHAPES = 100                        # training shapes scored (the first ones): evaluation costs no more past this
GRID = 64                                  # SDF grid over the bounding cube for volumetric IoU and meshes
SURFACE_POINTS = 5000                      # points on each surface for Chamfer-L1 and F-score
F_THRESHOLDS = (0.02, 0.05)                # F-score distance thresholds, world units (the bounding sphere has radius 1)
FIGURE_SHAPES = 6                          # shapes in the triptych, meshes written
TURNTABLE_FRAMES = 24                      # frames of the 360-degree turntable GIF
TURNTABLE_ELEVATION = 20.0

def fail(message:str): sys.exit(f"error: {message}")

def log(message:str): print(message, flush=True)

# *** silhouettes on full images ***

def render_views(model:SDFSRN, latent:np.ndarray, origin:np.ndarray, direction:np.ndarray, samples:int) -> np.ndarray:
  """min_sdf [V,P] of every pixel of V views, CHUNK views at a time under one jitted function (the last chunk is
  padded so every call has the same shapes). latent [V,L] is the code of each view's shape."""
  @TinyJit
  def chunk(latent:Tensor, origin:Tensor, direction:Tensor) -> Tensor:
    return model.sdf(latent, render.sample_points(origin.unsqueeze(1), direction, samples)).min(-1).realize()   # [CHUNK,P]
  out, V = [], len(origin)
  pad = -V % CHUNK
  latent, origin, direction = (np.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)) for x in (latent, origin, direction))
  for i in range(0, V + pad, CHUNK):
    out.append(chunk(*(Tensor(x[i:i + CHUNK]) for x in (latent, origin, direction))).numpy())
  return np.concatenate(out)[:V]                                                                               # [V,P]

def iou(mask:np.ndarray, truth:np.ndarray) -> np.ndarray:
  """Intersection over union of hard masks [V,...] per view [V]; a view where both are empty counts 1."""
  mask, truth = mask.reshape(len(mask), -1) > 0.5, truth.reshape(len(truth), -1) > 0.5
  inter, union = (mask & truth).sum(-1), (mask | truth).sum(-1)
  return np.where(union > 0, inter / np.maximum(union, 1), 1.0)

def silhouette_metrics(model:SDFSRN, data:dict, samples:int) -> tuple[dict, np.ndarray, np.ndarray]:
  """Training-view MSE (soft silhouette at the scoring temperature) and IoU, novel-view IoU, all and per family; the
  latents [S,L] and the novel views' min_sdf [S,V,P]."""
  S, V, res = len(data["images"]), data["novel_poses"].shape[1], data["images"].shape[-1]
  latent = model.encoder(Tensor(data["images"])).numpy()                                                     # [S,L]
  train_sdf = render_views(model, latent, *shapes.view_rays(data["poses"], res), samples)                   # [S,P]
  novel_sdf = render_views(model, latent.repeat(V, 0), *shapes.view_rays(data["novel_poses"], res), samples).reshape(S, V, -1)
  soft = render.silhouette(Tensor(train_sdf), render.SCORE_TEMPERATURE).numpy()                             # [S,P]
  truth, novel_truth = data["silhouettes"].reshape(S, -1), data["novel_silhouettes"].reshape(S, V, -1)
  novel = iou((novel_sdf < 0).reshape(S * V, -1), novel_truth.reshape(S * V, -1)).reshape(S, V)             # [S,V]
  metrics = dict(train_mse=float(((soft - truth) ** 2).mean()), train_iou=float(iou(train_sdf < 0, truth).mean()), novel_iou=float(novel.mean()))
  for family in shapes.FAMILIES:
    mine = np.array([s["family"] == family for s in data["shapes"]])
    if mine.any(): metrics[f"novel_iou_{family}"] = float(novel[mine].mean())
  return metrics | dict(novel_iou_per_shape=novel.mean(1).tolist()), latent, novel_sdf

def evaluate(model:SDFSRN, data:dict, samples:int, seed:int, rotate:bool) -> tuple[dict, np.ndarray, list]:
  """Everything in metrics.json: silhouettes and 3-D metrics of the training shapes and of HELD_OUT shapes never
  trained on (drawn with another seed, each seen once through its input image, scored from the same novel views)."""
  start = time.perf_counter()
  data = {k: v[:SCORED_SHAPES] for k, v in data.items()}                 # the first SCORED_SHAPES training shapes
  metrics, latent, novel_sdf = silhouette_metrics(model, data, samples)
  log(f"evaluate: silhouettes of {len(latent)} training shapes x {1 + data['novel_poses'].shape[1]} views ({time.perf_counter() - start:.0f} s)")
  held_data = shapes.make_dataset(HELD_OUT, data["images"].shape[-1], seed + 1, rotate)
  held, held_latent, _ = silhouette_metrics(model, held_data, samples)
  log(f"evaluate: silhouettes of {HELD_OUT} held-out shapes ({time.perf_counter() - start:.0f} s)")
  predicted, baseline, meshes = evaluate_3d(predicted_grids(model, latent), data["shapes"], seed)
  log(f"evaluate: 3-D metrics of the training shapes ({time.perf_counter() - start:.0f} s)")
  held_predicted, held_baseline, _ = evaluate_3d(predicted_grids(model, held_latent), held_data["shapes"], seed + 1)
  log(f"evaluate: 3-D metrics of the held-out shapes ({time.perf_counter() - start:.0f} s)")
  metrics |= dict(novel_minus_train_iou=metrics["novel_iou"] - metrics["train_iou"], held_out_shapes=HELD_OUT)
  metrics |= {f"held_out_{k}": v for k, v in held.items() if k != "novel_iou_per_shape"}
  metrics |= predicted | {f"sphere_baseline_{k}": v for k, v in baseline.items()}
  metrics |= {f"held_out_{k}": v for k, v in held_predicted.items()} | {f"held_out_sphere_baseline_{k}": v for k, v in held_baseline.items()}
  return metrics, novel_sdf, meshes

# *** 3-D evaluation: the shapes are analytic, so the true surface is known exactly ***

def grid_points() -> np.ndarray:
  axis = ((np.arange(GRID) + 0.5) / GRID * 2 - 1) * render.BOUND                                   # cell centres
  return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).astype(np.float32)             # [G,G,G,3]

def predicted_grids(model:SDFSRN, latent:np.ndarray) -> np.ndarray:
  """The decoder's SDF on the grid for each latent [S,L] -> [S,G,G,G], one shape per jitted call."""
  @TinyJit
  def one(latent:Tensor, point:Tensor) -> Tensor: return model.sdf(latent, point).realize()        # [1,G^3]
  point = Tensor(grid_points().reshape(1, -1, 3)).realize()
  return np.stack([one(Tensor(z[None]), point).numpy().reshape(GRID, GRID, GRID) for z in latent])

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
  product per 1000 rows, in float32 (the distances that matter are above 1e-3)."""
  a, b = a.astype(np.float32), b.astype(np.float32)
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
  sampled on its mesh. Means over shapes (an empty prediction scores Chamfer None), and the meshes."""
  rng, grid = np.random.default_rng(seed), grid_points()
  norm = np.sort(np.linalg.norm(grid, axis=-1).ravel())                                            # [G^3]
  order = np.argsort(np.linalg.norm(grid, axis=-1).ravel(), kind="stable")
  rows, base, meshes = [], [], []
  for sdf, shape in zip(pred_grid, shape_list):
    truth = shapes.shape_sdf(shape, grid) < 0                                                        # [G,G,G]
    true_points = shapes.surface_points(shape, SURFACE_POINTS, rng)                                 # [n,3]
    meshes.append(render.surface_nets(sdf))                                                          # empty if no sign change
    row = dict(volume_iou=float(((sdf < 0) & truth).sum() / max(((sdf < 0) | truth).sum(), 1)))
    if len(meshes[-1][1]):
      points = mesh_points(*meshes[-1], 4 * SURFACE_POINTS, rng)
      rows.append(row | surface_metrics(np.abs(shapes.shape_sdf(shape, points)), nearest(true_points, points)))
    else: rows.append(row | dict(chamfer_l1=None) | {f"fscore_{t}": 0.0 for t in F_THRESHOLDS})
    # a sphere of radius r holds the cells with |x| < r: with the cells sorted by |x|, its IoU for every r at once
    inside = np.cumsum(truth.ravel()[order])                                                         # [G^3] truth cells among the k nearest
    k = np.arange(1, len(norm) + 1)
    whole = np.append(norm[1:] > norm[:-1], True)                                                    # [G^3] k ends a shell of equal |x|
    best = int(np.argmax(np.where(whole, inside / (truth.sum() + k - inside), -1)))
    r = float(norm[best] + norm[min(best + 1, len(norm) - 1)]) / 2
    sphere = shapes.surface_points(dict(family="sphere", rotation=np.eye(3), size=np.full(3, r)), SURFACE_POINTS, rng)
    base.append(dict(volume_iou=float(inside[best] / (truth.sum() + best + 1 - inside[best]))) |
                surface_metrics(np.abs(shapes.shape_sdf(shape, sphere)), np.abs(np.linalg.norm(true_points, axis=-1) - r)))
  mean = lambda rows: {k: (float(np.mean(v)) if None not in (v := [r[k] for r in rows]) else None) for k in rows[0]}
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
  train_sdf = render_views(model, latent, *shapes.view_rays(data["poses"][:n], res), samples)               # [n,P]
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
  """GIF of the first shape of each family spinning: ground truth beside prediction."""
  first = [next(i for i, s in enumerate(data["shapes"]) if s["family"] == f) for f in shapes.FAMILIES if any(s["family"] == f for s in data["shapes"])]
  res, azimuth = data["images"].shape[-1], np.arange(TURNTABLE_FRAMES) * 360 / TURNTABLE_FRAMES
  poses = np.stack([np.stack([azimuth, np.full_like(azimuth, TURNTABLE_ELEVATION)], 1)] * len(first))      # [F,T,2]
  latent = model.encoder(Tensor(data["images"][first])).numpy().repeat(TURNTABLE_FRAMES, 0)
  pred = (render_views(model, latent, *shapes.view_rays(poses, res), samples) < 0).reshape(len(first), TURNTABLE_FRAMES, res, res)
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
  draw.text((4, margin - 20), f"training loss, log scale {10 ** high:.3g} .. {10 ** low:.3g}", fill="black")
  draw.text((w // 2, margin), "\n".join(f"{k} {metrics[k]:.4f}" for k in ("train_mse", "train_iou", "novel_iou", "held_out_novel_iou") if k in metrics), fill="black")
  image.save(path)

def write_figures(model:SDFSRN, data:dict, samples:int, out:str, metrics:dict, novel_sdf:np.ndarray, meshes:list, history:list[float]) -> list[str]:
  """Everything a finished run draws and writes next to its checkpoint; returns the paths."""
  paths = [os.path.join(out, name) for name in ("novel_views.png", "turntable.gif", "loss_curve.png", "metrics.json")]
  novel_grid(data, novel_sdf, paths[0])
  turntable(model, data, samples, paths[1])
  loss_curve(history, metrics, paths[2])
  for i, mesh in enumerate(meshes[:FIGURE_SHAPES]):
    paths.append(os.path.join(out, f"shape_{i:02d}_{data['shapes'][i]['family']}.obj"))
    save_obj(paths[-1], *mesh)
  with open(paths[3], "w") as f: json.dump(metrics, f, indent=2)
  return paths

# *** a checkpoint from the command line: --eval, --image ***

def load_for_eval(path:str) -> tuple[SDFSRN, dict]:
  if not os.path.isfile(path): fail(f"no checkpoint at {path}")
  try: cfg = read_config(path)
  except Exception: fail(f"{path} is not a Mini SDF-SRN checkpoint (safetensors with a config)")
  model = SDFSRN(cfg["res"], symmetric=cfg.get("symmetric", False))
  try: load_checkpoint(path, model)
  except Exception as e: fail(f"{path} does not fit this model: {e}")
  return model, cfg

def evaluate_checkpoint(path:str):
  model, cfg = load_for_eval(path)
  data = shapes.make_dataset(cfg["shapes"], cfg["res"], cfg["seed"], cfg["rotate"])
  metrics = evaluate(model, data, cfg["samples"], cfg["seed"], cfg["rotate"])[0]
  print(json.dumps(metrics | dict(device=Device.DEFAULT)))

def reconstruct(path:str, image_path:str, out:str):
  """Encode a user's image (any size or mode: converted to RGB and resized like the training images) and write its
  silhouettes from the six standard novel azimuths at +-20 degrees and its mesh."""
  model, cfg = load_for_eval(path)
  try: image = Image.open(image_path).convert("RGB").resize((cfg["res"], cfg["res"]), Image.BILINEAR)
  except (OSError, UnidentifiedImageError) as e: fail(f"cannot read {image_path} as an image: {e}")
  pixels = (np.asarray(image, np.float32) / 255).transpose(2, 0, 1)[None]                                  # [1,3,H,W]
  try: os.makedirs(out, exist_ok=True)
  except OSError as e: fail(f"cannot write to {out}: {e}")
  latent, poses = model.encoder(Tensor(pixels)).numpy(), shapes.novel_poses(-30.0)                         # azimuths 0, 60, ...
  sdf = render_views(model, latent.repeat(len(poses), 0), *shapes.view_rays(poses, cfg["res"]), cfg["samples"])  # [V,P]
  name = os.path.splitext(os.path.basename(image_path))[0]
  tile([[pixels[0].transpose(1, 2, 0)] + [(x < 0).reshape(cfg["res"], cfg["res"]).astype(np.float32) for x in sdf]]).save(os.path.join(out, f"{name}_views.png"))
  vertices, faces = render.surface_nets(predicted_grids(model, latent)[0])
  if len(faces): save_obj(os.path.join(out, f"{name}.obj"), vertices, faces)
  print(f"wrote {os.path.join(out, name)}_views.png" + (f" and {name}.obj" if len(faces) else " (the predicted surface is empty: no mesh)"))
