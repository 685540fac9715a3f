# The pictures of a trained Mini SDF-SRN: shaded renders of any sdf_fn (the model's and the true shapes', through the same
# renderer), the triptych, the novel views worst first, the turntable GIF, the loss curve; and `--image PHOTO`, a user's
# picture turned into views, a turntable and a mesh. Imports evaluate for the renders and meshes; never train.py.
import json, os, time
from typing import Callable
import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError
from tinygrad import Tensor
import render, shapes
from evaluate import CHECK_SHAPES, chunked, fail, held_out, load_for_eval, log, over_disc, predicted_grids, render_views, save_obj
from sdfsrn import SDFSRN

# V views, P = H*W pixels, L latent size, T turntable frames
FIGURE_SHAPES = 6                          # shapes in the triptych, meshes written
TURNTABLE_FRAMES, FRAME_MS = 24, 80        # the 360-degree turntable GIF: frames, milliseconds each
TURNTABLE_ELEVATION = 20.0                 # degrees; the training views lie within +-shapes.MAX_ELEVATION
TILE = 128                                 # pixels per image in the figures: nearest-neighbour scaled by TILE // res
GUTTER, LINE, NAMES = 4, 14, 70            # pixels between images, per line of PIL's default font, for the row labels
LOSS_COLOUR, IOU_COLOUR = (200, 60, 40), (40, 90, 200)
FILL_THRESHOLD = 60                        # --image: the most a light background's RGB may differ (summed) from a corner's and be filled

def shaded_views(model:SDFSRN, latent:np.ndarray, poses:np.ndarray, res:int, samples:int) -> np.ndarray:
  """Lambert-shaded pictures [V,H,W,3] of the predicted shapes (latent [V,L]) from poses [V,2], lit as the input images are."""
  (origin, direction), light = shapes.view_rays(poses, res), shapes.world_lights(poses)
  shade = lambda latent, origin, direction, light: render.shaded(lambda point: model.sdf(latent, point), origin.unsqueeze(1), direction, light, samples)
  return over_disc(lambda direction: chunked(shade, latent, origin, direction, light), origin, direction, 0).reshape(len(poses), res, res, 3)

def shaded_truth(shape:dict, poses:np.ndarray, res:int, samples:int) -> np.ndarray:
  """The same pictures [V,H,W,3] of a true shape: its analytic SDF through the same renderer, so both sides are drawn alike."""
  (origin, direction), light = shapes.view_rays(poses, res), shapes.world_lights(poses)
  sdf_fn = lambda point: Tensor(shapes.shape_sdf(shape, point.numpy()).astype(np.float32))
  shade = lambda direction: render.shaded(sdf_fn, Tensor(origin).unsqueeze(1), Tensor(direction), Tensor(light), samples).numpy()
  return over_disc(shade, origin, direction, 0).reshape(len(poses), res, res, 3)

def overlay(pred:np.ndarray, truth:np.ndarray) -> np.ndarray:
  """Masks [...] -> RGB [...,3]: white where both, red predicted only, blue missed, black neither."""
  pred, truth = pred > 0.5, truth > 0.5
  return np.stack([pred, pred & truth, truth], -1).astype(np.float32)

def sheet(rows:list[list[np.ndarray]], columns:list[str]=(), names:list[str]=(), title:str="") -> Image.Image:
  """[H,W] gray or [H,W,3] colour images in [0,1] scaled to about TILE pixels, tiled on white under a title and labels of up
  to two lines per column, after a label per row; an empty row leaves a gap."""
  h, w = next(x for row in rows for x in row).shape[:2]
  scale, head = max(1, TILE // w), LINE * (title.count("\n") + 1) * bool(title)
  top, left, H, W = head + 2 * LINE * bool(columns), NAMES * bool(names), h * scale + GUTTER, w * scale + GUTTER   # H, W: one cell
  image = Image.new("RGB", (left + W * max(map(len, rows)), top + H * len(rows)), "white")
  for i, row in enumerate(rows):
    for j, x in enumerate(row):
      rgb = (np.repeat(x[..., None], 3, -1) if x.ndim == 2 else x).clip(0, 1)                                     # [H,W,3]
      image.paste(Image.fromarray((rgb * 255).astype(np.uint8)).resize((w * scale, h * scale), Image.NEAREST), (left + j * W, top + i * H))
  draw, where = ImageDraw.Draw(image), [(2, 0)] + [(left + j * W, head) for j in range(len(columns))] + [(2, top + i * H) for i in range(len(names))]
  for xy, text in zip(where, [title, *columns, *names]): draw.multiline_text(xy, text, fill="black")
  return image

def triptych(model:SDFSRN, data:dict, samples:int, path:str):
  """Input image, ground truth, prediction and their overlay on the training view of the first few shapes."""
  res, n = data["images"].shape[-1], min(FIGURE_SHAPES, len(data["images"]))
  latent = chunked(model.encoder, data["images"][:n])                                                         # [n,L]
  pred = render_views(model, latent, data["poses"][:n], res, samples).reshape(n, res, res) < 0               # [n,H,W]
  rows = [[data["images"][s].transpose(1, 2, 0), data["silhouettes"][s], pred[s], overlay(pred[s], data["silhouettes"][s])] for s in range(n)]
  sheet(rows, ["input", "truth", "model", "overlay"]).save(path)

def novel_grid(data:dict, novel_sdf:np.ndarray, per_shape:list[float], path:str, worst:int=8, best:int=4):
  """A row per training shape, worst novel-view IoU first (of more than worst + best, those with a gap between): its name, input, overlays."""
  S, V, res = *novel_sdf.shape[:2], data["images"].shape[-1]
  order = list(np.argsort(per_shape, kind="stable"))
  shown = order if S <= worst + best else order[:worst] + [None] + order[-best:]
  rows = [[] if s is None else [data["images"][s].transpose(1, 2, 0)] +
          [overlay(novel_sdf[s, v].reshape(res, res) < 0, data["novel_silhouettes"][s, v]) for v in range(V)] for s in shown]
  names = [f"{S - worst - best} more\nnot shown" if s is None else f"{data['shapes'][s]['family']}\nIoU {per_shape[s]:.3f}" for s in shown]
  columns = ["input"] + [f"az +{az:.0f}\nel {el:+.0f}" for az, el in shapes.novel_poses(0)]
  title = f"novel views of {S} training shapes by novel-view IoU, worst first" + (f": the worst {worst} and the best {best}" if None in shown else "")
  title += "\nwhite: both   red: predicted only   blue: missed   black: neither   (az: degrees from the input view)"
  sheet(rows, columns, names, title).save(path)

def turntable_poses() -> np.ndarray:
  azimuth = np.arange(TURNTABLE_FRAMES, dtype=np.float32) * 360 / TURNTABLE_FRAMES
  return np.stack([azimuth, np.full_like(azimuth, TURNTABLE_ELEVATION)], 1)                                   # [T,2]

def save_gif(columns:list[np.ndarray], labels:list[str], path:str):
  """A looping GIF whose frame t shows frame t of every column [T,H,W,3] side by side, each under its label."""
  frames = [sheet([[column[t] for column in columns]], labels) for t in range(TURNTABLE_FRAMES)]
  frames[0].save(path, save_all=True, append_images=frames[1:], duration=FRAME_MS, loop=0)

def turntable_shapes(data:dict, held_data:dict) -> tuple[list[dict], np.ndarray]:
  """What the turntable shows: the first shape of each family and the first held-out shape (the last), and their input
  images [K,3,H,W]."""
  families = [s["family"] for s in data["shapes"]]
  first = [families.index(f) for f in shapes.FAMILIES if f in families]
  return [data["shapes"][i] for i in first] + held_data["shapes"][:1], np.concatenate([data["images"][first], held_data["images"][:1]])

def turntable(shown:list[dict], args, model_frames:Callable, truth:list) -> dict:
  """The turntable GIF of shown (turntable_shapes; the last is held out): each shape's shaded truth (truth: the frames
  train.py drew at the checkpoints; the rest are drawn here) beside the model's frames, which a --workers helper draws
  meanwhile (model_frames() waits for them and the held-out metrics; returns the metrics)."""
  start, trained = time.perf_counter(), len(shown) - 1
  truth += [shaded_truth(shape, turntable_poses(), args.res, args.samples) for shape in shown[len(truth):]]
  metrics, pred = model_frames()
  labels = [x for k, s in enumerate(shown) for x in (f"{s['family']}{', held out' if k == trained else ''}\ntruth", "\nmodel")]
  save_gif([x for t, p in zip(truth, pred) for x in (t, p)], labels, os.path.join(args.out, "turntable.gif"))
  log(f"figures: turntable ({time.perf_counter() - start:.0f} s here)")
  return metrics

def to_pixel(value, low:float, high:float, first:float, last:float, log:bool=False) -> np.ndarray:
  """Pixel column or row of data values on an axis that runs from low at pixel first to high at pixel last, linear or log10."""
  f = np.log10 if log else np.asarray
  return first + (last - first) * (f(np.asarray(value, np.float64)) - f(low)) / (f(high) - f(low))

def loss_curve(history:list[float], metrics:dict, path:str, size=(760, 440), margin=(70, 60, 60, 46)):
  """The training loss per epoch on a log axis (left) and metrics["checkpoint_novel_iou"], (epoch, IoU) pairs, from 0 to 1 (right)."""
  image, (w, h), (left, top, right, bottom), E = Image.new("RGB", size, "white"), size, margin, len(history)
  draw, checks = ImageDraw.Draw(image), metrics.get("checkpoint_novel_iou", [])
  history = [max(loss, 1e-9) for loss in history]   # a log axis has no 0, which is every loss read on tinygrad's NULL device
  low, high = np.floor(np.log10(min(history))), np.ceil(np.log10(max(history)))
  high += high == low                                                                                          # at least one decade
  x = lambda epoch: float(to_pixel(epoch, 0, E, left, w - right))
  y = lambda loss: float(to_pixel(loss, 10 ** low, 10 ** high, h - bottom, top, log=True))
  y_iou = lambda v: float(to_pixel(v, 0, 1, h - bottom, top))
  step = next(s for s in (m * 10 ** k for k in range(9) for m in (1, 2, 5)) if E <= 8 * s)                   # at most 9 epoch ticks
  ticks = [((x(e), h - bottom), (0, 5), str(e), "ma") for e in range(0, E + 1, step)]                          # (where, length, label, anchor)
  ticks += [((left, y(10 ** k)), (-5, 0), f"{10.0 ** k:g}", "rm") for k in np.arange(low, high + 1)]
  ticks += [((left, y(m * 10 ** k)), (-2, 0), "", "rm") for k in np.arange(low, high) for m in range(2, 10)]  # minor: 2..9 per decade
  ticks += [((w - right, y_iou(v)), (5, 0), f"{v:.1f}", "lm") for v in np.linspace(0, 1, 6)] * bool(checks)
  for (px, py), (dx, dy), text, anchor in ticks:
    draw.line([(px, py), (px + dx, py + dy)], fill="black")
    draw.text((px + 2 * dx, py + 2 * dy), text, fill="black", anchor=anchor)
  draw.rectangle([left, top, w - right, h - bottom], outline="black")
  draw.line([(x(epoch + 1), y(loss)) for epoch, loss in enumerate(history)], fill=LOSS_COLOUR, width=2)
  for epoch, v in checks: draw.ellipse([x(epoch) - 4, y_iou(v) - 4, x(epoch) + 4, y_iou(v) + 4], fill=IOU_COLOUR)
  draw.text(((left + w - right) / 2, h - 18), "epoch", fill="black", anchor="ma")
  draw.text((left, top - 6), "training loss", fill="black", anchor="ls")
  draw.line([(left, 14), (left + 16, 14)], fill=LOSS_COLOUR, width=2)                                        # the legend
  draw.text((left + 22, 14), "training loss, mean per epoch (left axis)", fill="black", anchor="lm")
  if checks:
    draw.text((w - right, top - 6), "novel-view IoU", fill="black", anchor="rs")
    draw.ellipse([left + 4, 28, left + 12, 36], fill=IOU_COLOUR)
    draw.text((left + 22, 32), f"novel-view IoU of the first {CHECK_SHAPES} shapes at the checkpoints (right axis)", fill="black", anchor="lm")
  image.save(path)

def write_figures(data:dict, out:str, metrics:dict, novel_sdf:np.ndarray, meshes:list) -> list[str]:
  """What a finished run draws and writes next to its checkpoint, but the turntable GIF (turntable); the paths."""
  paths = [os.path.join(out, name) for name in ("novel_views.png", "loss_curve.png", "metrics.json")]
  novel_grid(data, novel_sdf, metrics["novel_iou_per_shape"], paths[0])
  loss_curve(metrics["loss_history"], metrics, paths[1])
  for i, mesh in enumerate(meshes[:FIGURE_SHAPES]):
    paths.append(os.path.join(out, f"shape_{i:02d}_{data['shapes'][i]['family']}.obj"))
    save_obj(paths[-1], *mesh)
  with open(paths[2], "w") as f: json.dump(metrics, f, indent=2)
  return paths

def held_out_and_turntable(model:SDFSRN, data:dict, args) -> tuple[dict, np.ndarray]:
  """The held-out shapes' metrics and the model's turntable frames [K,T,H,W,3] (the turntable shows one of them): the
  part of the work after training that a --workers helper takes while the main process scores the training shapes and
  writes the GIF (turntable)."""
  metrics, held_data = held_out(model, args.res, args.samples, args.seed, args.rotate)
  images = turntable_shapes(data, held_data)[1]                                                               # [K,3,H,W]
  latent = chunked(model.encoder, images).repeat(TURNTABLE_FRAMES, 0)                                          # [K*T,L]
  frames = shaded_views(model, latent, np.tile(turntable_poses(), (len(images), 1)), args.res, args.samples)   # [K*T,H,W,3]
  return metrics, frames.reshape(len(images), TURNTABLE_FRAMES, *frames.shape[1:])

# *** a user's picture: --image ***

def read_image(path:str, res:int) -> np.ndarray:
  """A user's picture of any size or mode as the network's input [3,res,res] in [0,1]. The network has only seen shapes on
  black, so transparency is composited on black and a light background is filled with black from the corners, said when done."""
  try:
    image = Image.open(path)
    if image.mode.startswith("I"): image = Image.fromarray((np.asarray(image) / 257).clip(0, 255).astype(np.uint8))   # 16-bit: to 8
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
      log(f"{path} has transparency: composited on black, the training images' background")
      image = Image.alpha_composite(Image.new("RGBA", image.size, "black"), image.convert("RGBA"))
    image = image.convert("RGB").resize((res, res), Image.BILINEAR)
  except Image.DecompressionBombError as e: fail(f"{path} is too large to read safely ({e}); shrink it first, the network reads {res}x{res}")
  except (OSError, UnidentifiedImageError) as e: fail(f"cannot read {path} as an image: {e}")
  rgb = np.asarray(image, np.float32) / 255                                                                     # [H,W,3]
  if np.median(np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).mean(-1)) > 0.5:                        # a light border
    log(f"{path} has a light background: filled with black from the corners, as the training images have")
    for corner in ((0, 0), (res - 1, 0), (0, res - 1), (res - 1, res - 1)): ImageDraw.floodfill(image, corner, (0, 0, 0), thresh=FILL_THRESHOLD)
    rgb = np.asarray(image, np.float32) / 255
  return rgb.transpose(2, 0, 1)                                                                                 # [3,H,W]

def reconstruct(path:str, image_path:str, out:str):
  """Encode a user's image and write its shaded views from the six novel azimuths at +-20 degrees, a turntable and its mesh."""
  model, config = load_for_eval(path)
  res, samples = config["res"], config["samples"]
  pixels = read_image(image_path, res)[None]                                                                # [1,3,H,W]
  try: os.makedirs(out, exist_ok=True)
  except OSError as e: fail(f"cannot write to {out}: {e}")
  latent, poses = chunked(model.encoder, pixels), shapes.novel_poses(-30.0)                                  # azimuths 0, 60, ...
  views = shaded_views(model, latent.repeat(len(poses), 0), poses, res, samples)                            # [V,H,W,3]
  name = os.path.join(out, os.path.splitext(os.path.basename(image_path))[0])
  sheet([[pixels[0].transpose(1, 2, 0), *views]], ["input"] + [f"az {az:.0f}\nel {el:+.0f}" for az, el in poses]).save(f"{name}_views.png")
  spin = shaded_views(model, latent.repeat(TURNTABLE_FRAMES, 0), turntable_poses(), res, samples)           # [T,H,W,3]
  save_gif([spin], ["model"], f"{name}_turntable.gif")
  vertices, faces = render.surface_nets(predicted_grids(model, latent)[0])
  if len(faces): save_obj(f"{name}.obj", vertices, faces)
  print(f"wrote {name}_views.png, {name}_turntable.gif" + (f" and {name}.obj" if len(faces) else " (the predicted surface is empty: no mesh)"))
