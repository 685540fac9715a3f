# The pictures of a trained Mini SDF-SRN: shaded renders of any sdf_fn (the model's and the true shapes', through the
# same renderer), the triptych, the novel views worst first, the turntable GIF, the loss curve; and `--image PHOTO`, a
# user's picture turned into views, a turntable and a mesh. Imports evaluate for the renders and meshes; never train.py.
import json, os
import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError
from tinygrad import Tensor
import render, shapes
from cli import fail, log
from evaluate import CHECK_SHAPES, chunked, encode, held_out, load_for_eval, over_disc, predicted_grids, render_views
from evaluate import save_obj
from sdfsrn import SDFSRN

# V views, P = H*W pixels, L latent size, T turntable frames
FIGURE_SHAPES = 6             # shapes in the triptych, meshes written
TURNTABLE_FRAMES = 24         # the 360-degree turntable GIF: frames ...
FRAME_MS = 80                 # ... of this many milliseconds each
TURNTABLE_ELEVATION = 20.0    # degrees; the training views lie within +-shapes.MAX_ELEVATION
TILE = 128                    # pixels per image in the figures: nearest-neighbour scaled by TILE // res
GUTTER, LINE, NAMES = 4, 14, 70   # pixels between images, per line of PIL's default font, for the row labels
LOSS_COLOUR, IOU_COLOUR = (200, 60, 40), (40, 90, 200)
FILL_THRESHOLD = 60           # --image: the most a light background's RGB may differ (summed) from a corner's

def shaded_views(model:SDFSRN, code:np.ndarray, poses:np.ndarray, res:int, samples:int) -> np.ndarray:
  """Lambert-shaded pictures [V,H,W,3] of the predicted shapes (codes [V,L]) from poses [V,2], lit as the input
  images are."""
  (origin, direction), light = shapes.view_rays(poses, res), shapes.world_lights(poses)
  def shade(code:Tensor, origin:Tensor, direction:Tensor, light:Tensor) -> Tensor:
    def sdf_fn(point:Tensor) -> Tensor:
      return model.sdf(code, point)
    return render.shaded(sdf_fn, origin.unsqueeze(1), direction, light, samples)          # [V,P',3]
  def on_disc(direction:np.ndarray) -> np.ndarray:
    return chunked(shade, code, origin, direction, light)
  return over_disc(on_disc, origin, direction, 0).reshape(len(poses), res, res, 3)

def shaded_truth(shape:dict, poses:np.ndarray, res:int, samples:int) -> np.ndarray:
  """The same pictures [V,H,W,3] of a true shape: its analytic SDF through the same renderer, so both sides are
  drawn alike."""
  (origin, direction), light = shapes.view_rays(poses, res), shapes.world_lights(poses)
  def sdf_fn(point:Tensor) -> Tensor:
    return Tensor(shapes.shape_sdf(shape, point.numpy()).astype(np.float32))
  def on_disc(direction:np.ndarray) -> np.ndarray:
    return render.shaded(sdf_fn, Tensor(origin).unsqueeze(1), Tensor(direction), Tensor(light), samples).numpy()
  return over_disc(on_disc, origin, direction, 0).reshape(len(poses), res, res, 3)

def overlay(pred:np.ndarray, truth:np.ndarray) -> np.ndarray:
  """Masks [...] -> RGB [...,3]: white where both, red predicted only, blue missed, black neither."""
  pred, truth = pred > 0.5, truth > 0.5
  return np.stack([pred, pred & truth, truth], -1).astype(np.float32)

def sheet(rows:list[list[np.ndarray]], columns:list[str]=(), names:list[str]=(), title:str="") -> Image.Image:
  """[H,W] gray or [H,W,3] colour images in [0,1] scaled to about TILE pixels, tiled on white under a title and
  labels of up to two lines per column, after a label per row; an empty row leaves a gap."""
  h, w = next(x for row in rows for x in row).shape[:2]
  scale = max(1, TILE // w)
  head = LINE * (title.count("\n") + 1) if title else 0
  top = head + (2 * LINE if columns else 0)
  left = NAMES if names else 0
  H, W = h * scale + GUTTER, w * scale + GUTTER                                             # one cell
  image = Image.new("RGB", (left + W * max(map(len, rows)), top + H * len(rows)), "white")
  for i, row in enumerate(rows):
    for j, x in enumerate(row):
      rgb = (np.repeat(x[..., None], 3, -1) if x.ndim == 2 else x).clip(0, 1)               # [H,W,3]
      tile = Image.fromarray((rgb * 255).astype(np.uint8)).resize((w * scale, h * scale), Image.NEAREST)
      image.paste(tile, (left + j * W, top + i * H))
  draw = ImageDraw.Draw(image)
  where = [(2, 0)] + [(left + j * W, head) for j in range(len(columns))] + [(2, top + i * H) for i in range(len(names))]
  for xy, text in zip(where, [title, *columns, *names]):
    draw.multiline_text(xy, text, fill="black")
  return image

def triptych(model:SDFSRN, data:dict, samples:int, path:str):
  """Input image, ground truth, prediction and their overlay on the training view of the first few shapes."""
  res, n = data["images"].shape[-1], min(FIGURE_SHAPES, len(data["images"]))
  code = encode(model, data["images"][:n], data["poses"][:n])                               # [n,L]
  pred = render_views(model, code, data["poses"][:n], res, samples).reshape(n, res, res) < 0   # [n,H,W]
  truth = data["silhouettes"]
  rows = [[data["images"][s].transpose(1, 2, 0), truth[s], pred[s], overlay(pred[s], truth[s])] for s in range(n)]
  sheet(rows, ["input", "truth", "model", "overlay"]).save(path)

def novel_grid(data:dict, novel_sdf:np.ndarray, per_shape:list[float], path:str, worst:int=8, best:int=4):
  """A row per training shape, worst novel-view IoU first (of more than worst + best, those with a gap between):
  its name, input, overlays."""
  S, V, res = *novel_sdf.shape[:2], data["images"].shape[-1]
  order = list(np.argsort(per_shape, kind="stable"))
  shown = order if S <= worst + best else order[:worst] + [None] + order[-best:]
  rows, names = [], []
  for s in shown:
    if s is None:
      rows.append([])
      names.append(f"{S - worst - best} more\nnot shown")
      continue
    overlays = [overlay(novel_sdf[s, v].reshape(res, res) < 0, data["novel_silhouettes"][s, v]) for v in range(V)]
    rows.append([data["images"][s].transpose(1, 2, 0)] + overlays)
    names.append(f"{data['shapes'][s]['family']}\nIoU {per_shape[s]:.3f}")
  columns = ["input"] + [f"az +{az:.0f}\nel {el:+.0f}" for az, el in shapes.novel_poses(0)]
  title = f"novel views of {S} training shapes by novel-view IoU, worst first"
  if None in shown:
    title += f": the worst {worst} and the best {best}"
  title += "\nwhite: both   red: predicted only   blue: missed   black: neither   (az: degrees from the input view)"
  sheet(rows, columns, names, title).save(path)

def turntable_poses() -> np.ndarray:
  azimuth = np.arange(TURNTABLE_FRAMES, dtype=np.float32) * 360 / TURNTABLE_FRAMES
  return np.stack([azimuth, np.full_like(azimuth, TURNTABLE_ELEVATION)], 1)                 # [T,2]

def save_gif(columns:list[np.ndarray], labels:list[str], path:str):
  """A looping GIF whose frame t shows frame t of every column [T,H,W,3] side by side, each under its label."""
  frames = [sheet([[column[t] for column in columns]], labels) for t in range(TURNTABLE_FRAMES)]
  frames[0].save(path, save_all=True, append_images=frames[1:], duration=FRAME_MS, loop=0)

def turntable_shapes(data:dict, held_data:dict) -> tuple[list[dict], np.ndarray, np.ndarray]:
  """What the turntable shows: the first shape of each family and the first held-out shape (the last); their input
  images [K,3,H,W] and poses [K,2]."""
  families = [s["family"] for s in data["shapes"]]
  first = [families.index(f) for f in shapes.FAMILIES if f in families]
  shown = [data["shapes"][i] for i in first] + held_data["shapes"][:1]
  images = np.concatenate([data["images"][first], held_data["images"][:1]])
  poses = np.concatenate([data["poses"][first], held_data["poses"][:1]])
  return shown, images, poses

def turntable(shown:list[dict], truth:list[np.ndarray], model_frames:np.ndarray, path:str):
  """The turntable GIF of shown (turntable_shapes; the last is held out): each shape's shaded truth [T,H,W,3]
  beside the model's frames [K,T,H,W,3]."""
  held = len(shown) - 1
  labels = []
  for k, s in enumerate(shown):
    labels += [f"{s['family']}{', held out' if k == held else ''}\ntruth", "\nmodel"]
  save_gif([x for t, p in zip(truth, model_frames) for x in (t, p)], labels, path)

def held_out_and_turntable(model:SDFSRN, data:dict, args) -> tuple[dict, np.ndarray]:
  """The held-out shapes' metrics and the model's turntable frames [K,T,H,W,3]: the work after training that a
  --workers helper takes while the main process scores the training shapes."""
  metrics, held_data = held_out(model, args.res, args.samples, args.seed, args.rotate)
  _, images, poses = turntable_shapes(data, held_data)                                      # [K,3,H,W] [K,2]
  code = encode(model, images, poses).repeat(TURNTABLE_FRAMES, 0)                           # [K*T,L]
  spin = np.tile(turntable_poses(), (len(images), 1))                                      # [K*T,2]
  frames = shaded_views(model, code, spin, args.res, args.samples)                          # [K*T,H,W,3]
  return metrics, frames.reshape(len(images), TURNTABLE_FRAMES, *frames.shape[1:])

def to_pixel(value, low:float, high:float, first:float, last:float, log:bool=False) -> np.ndarray:
  """Pixel column or row of data values on an axis that runs from low at pixel first to high at pixel last, linear or
  log10."""
  f = np.log10 if log else np.asarray
  return first + (last - first) * (f(np.asarray(value, np.float64)) - f(low)) / (f(high) - f(low))

def loss_curve(history:list[float], metrics:dict, path:str, size=(760, 440), margin=(70, 60, 60, 46)):
  """The training loss per epoch on a log axis (left) and metrics["checkpoint_novel_iou"], (epoch, IoU) pairs, from 0
  to 1 (right)."""
  image, (w, h), (left, top, right, bottom), E = Image.new("RGB", size, "white"), size, margin, len(history)
  draw, checks = ImageDraw.Draw(image), metrics.get("checkpoint_novel_iou", [])
  history = [max(loss, 1e-9) for loss in history]   # a log axis has no 0 (every loss read on tinygrad's NULL device)
  low, high = np.floor(np.log10(min(history))), np.ceil(np.log10(max(history)))
  if high == low:   # at least one decade
    high += 1
  def x(epoch:float) -> float:
    return float(to_pixel(epoch, 0, E, left, w - right))
  def y(loss:float) -> float:
    return float(to_pixel(loss, 10 ** low, 10 ** high, h - bottom, top, log=True))
  def y_iou(v:float) -> float:
    return float(to_pixel(v, 0, 1, h - bottom, top))
  step = next(s for s in (m * 10 ** k for k in range(9) for m in (1, 2, 5)) if E <= 8 * s)   # at most 9 epoch ticks
  # (where, length, label, anchor)
  ticks = [((x(e), h - bottom), (0, 5), str(e), "ma") for e in range(0, E + 1, step)]
  ticks += [((left, y(10 ** k)), (-5, 0), f"{10.0 ** k:g}", "rm") for k in np.arange(low, high + 1)]
  ticks += [((left, y(m * 10 ** k)), (-2, 0), "", "rm") for k in np.arange(low, high) for m in range(2, 10)]   # minor
  if checks:
    ticks += [((w - right, y_iou(v)), (5, 0), f"{v:.1f}", "lm") for v in np.linspace(0, 1, 6)]
  for (px, py), (dx, dy), text, anchor in ticks:
    draw.line([(px, py), (px + dx, py + dy)], fill="black")
    draw.text((px + 2 * dx, py + 2 * dy), text, fill="black", anchor=anchor)
  draw.rectangle([left, top, w - right, h - bottom], outline="black")
  draw.line([(x(epoch + 1), y(loss)) for epoch, loss in enumerate(history)], fill=LOSS_COLOUR, width=2)
  for epoch, v in checks:
    draw.ellipse([x(epoch) - 4, y_iou(v) - 4, x(epoch) + 4, y_iou(v) + 4], fill=IOU_COLOUR)
  draw.text(((left + w - right) / 2, h - 18), "epoch", fill="black", anchor="ma")
  draw.text((left, top - 6), "training loss", fill="black", anchor="ls")
  draw.line([(left, 14), (left + 16, 14)], fill=LOSS_COLOUR, width=2)   # the legend
  draw.text((left + 22, 14), "training loss, mean per epoch (left axis)", fill="black", anchor="lm")
  if checks:
    draw.text((w - right, top - 6), "novel-view IoU", fill="black", anchor="rs")
    draw.ellipse([left + 4, 28, left + 12, 36], fill=IOU_COLOUR)
    label = f"novel-view IoU of the first {CHECK_SHAPES} shapes at the checkpoints (right axis)"
    draw.text((left + 22, 32), label, fill="black", anchor="lm")
  image.save(path)

def write_figures(data:dict, out:str, metrics:dict, novel_sdf:np.ndarray, meshes:list) -> list[str]:
  """What a finished run draws and writes next to its checkpoint, but the turntable GIF (turntable); the paths."""
  paths = [os.path.join(out, name) for name in ("novel_views.png", "loss_curve.png", "metrics.json")]
  novel_grid(data, novel_sdf, metrics["novel_iou_per_shape"], paths[0])
  loss_curve(metrics["loss_history"], metrics, paths[1])
  for i, mesh in enumerate(meshes[:FIGURE_SHAPES]):
    paths.append(os.path.join(out, f"shape_{i:02d}_{data['shapes'][i]['family']}.obj"))
    save_obj(paths[-1], *mesh)
  with open(paths[2], "w") as f:
    json.dump(metrics, f, indent=2)
  return paths

# *** a user's picture: --image ***

FRAME_FILL = 0.47   # the object's longer side over the frame's: the median of the training images' (shapes.py)

def read_image(path:str, res:int) -> np.ndarray:
  """A user's picture of any size or mode as the network's input [3,res,res] in [0,1], framed as the training images
  are: on black (transparency composited on black; a light background filled with black from the corners, at full
  size so no blended ring is left), the object's bounding box centred and its longer side FRAME_FILL of the frame,
  aspect ratio kept (black added around it), then shrunk by averaging. A picture without a background around the
  object is only made square. Each change is said."""
  try:
    image = Image.open(path)
    if image.mode.startswith("I"):   # 16-bit: to 8
      image = Image.fromarray((np.asarray(image) / 257).clip(0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
      log(f"{path} has transparency: composited on black, the training images' background")
      image = Image.alpha_composite(Image.new("RGBA", image.size, "black"), image.convert("RGBA"))
    image = image.convert("RGB")
  except Image.DecompressionBombError as e:
    fail(f"{path} is too large to read safely ({e}); shrink it first, the network reads {res}x{res}")
  except (OSError, UnidentifiedImageError) as e:
    fail(f"cannot read {path} as an image: {e}")
  rgb = np.asarray(image, np.float32) / 255                                                    # [h,w,3]
  border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
  if np.median(border.mean(-1)) > 0.5:
    log(f"{path} has a light background: filled with black from the corners, as the training images have")
    w, h = image.size
    for corner in ((0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)):
      ImageDraw.floodfill(image, corner, (0, 0, 0), thresh=FILL_THRESHOLD)
    rgb = np.asarray(image, np.float32) / 255
  h, w = rgb.shape[:2]
  rows, columns = np.nonzero(rgb.max(-1) > 0.05)                                               # the object's pixels
  apart = len(rows) and rows.min() > 0 and columns.min() > 0 and rows.max() < h - 1 and columns.max() < w - 1
  if apart:   # the object on black, clear of the edges: framed as the training images frame their shapes
    top, bottom, left, right = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
    side = int(np.ceil(max(bottom - top, right - left) / FRAME_FILL))
    corner = (side // 2 - (left + right) // 2, side // 2 - (top + bottom) // 2)
    log(f"{path}: the object ({right - left}x{bottom - top} pixels) centred in a {side}x{side} frame, as in training")
  else:       # no background around it: the picture as it is, black added to make it square
    side = max(h, w)
    corner = ((side - w) // 2, (side - h) // 2)
    if h != w:
      log(f"{path}: no background around the object; made square with black, keeping its aspect ratio")
  frame = Image.new("RGB", (side, side), "black")
  frame.paste(image, corner)
  image = frame
  return (np.asarray(image.resize((res, res), Image.BOX), np.float32) / 255).transpose(2, 0, 1)   # [3,H,W]

def reconstruct(path:str, image_path:str, out:str, pose:tuple[float, float]=(0.0, 0.0)):
  """Encode a user's image seen from pose (azimuth, elevation in degrees) and write its shaded views from six azimuths
  at +-20 degrees, the first the photo's, a turntable and its mesh. A photo's camera is unknown unless the user says
  (--image-pose): by default azimuth 0, elevation 0, so a --pose model's frame is the photo's."""
  model, config = load_for_eval(path)
  res, samples = config["res"], config["samples"]
  pixels = read_image(image_path, res)[None]                                                  # [1,3,H,W]
  try:
    os.makedirs(out, exist_ok=True)
  except OSError as e:
    fail(f"cannot write to {out}: {e}")
  code = encode(model, pixels, np.array([pose], np.float32))                                   # [1,L]
  poses = shapes.novel_poses(pose[0] - 30.0)                                                   # the photo's, +60, ...
  views = shaded_views(model, code.repeat(len(poses), 0), poses, res, samples)                # [V,H,W,3]
  name = os.path.join(out, os.path.splitext(os.path.basename(image_path))[0])
  columns = ["input"] + [f"az {az:.0f}\nel {el:+.0f}" for az, el in poses]
  sheet([[pixels[0].transpose(1, 2, 0), *views]], columns).save(f"{name}_views.png")
  spin = shaded_views(model, code.repeat(TURNTABLE_FRAMES, 0), turntable_poses(), res, samples)   # [T,H,W,3]
  save_gif([spin], ["model"], f"{name}_turntable.gif")
  vertices, faces = render.surface_nets(predicted_grids(model, code)[0])
  if len(faces):
    save_obj(f"{name}.obj", vertices, faces)
    print(f"wrote {name}_views.png, {name}_turntable.gif and {name}.obj")
  else:
    print(f"wrote {name}_views.png, {name}_turntable.gif (the predicted surface is empty: no mesh)")
