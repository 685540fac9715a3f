# Synthetic data for Mini SDF-SRN: analytic spheres, boxes and ellipsoids, a look-at camera, shaded input images and
# exact ground-truth silhouettes from ray/shape intersection. Pure numpy: ground truth never depends on the network
# or on the renderer that trains it. The same seed gives the same bytes.
import numpy as np

# S shapes, V novel views per shape, K training views per shape, H=W=res pixels, P=res*res rays (pixel centres) per view
FAMILIES = ("sphere", "box", "ellipsoid")
CAMERA_DISTANCE = 2.5   # the unit sphere that bounds every shape subtends 23.6 degrees of half-angle from here ...
FOV_DEGREES = 50.0      # ... so it just fits inside this 25-degree half field of view, with a thin margin
MAX_ELEVATION = 30.0    # training views: azimuth uniform in [0,360), elevation uniform in +-30 degrees
NOVEL_VIEWS = 6         # novel view k: azimuth = train + 30 + 60k degrees, elevation +20/-20 alternating
                        # (never the training view)
# in camera coordinates: from upper left, behind the camera
LIGHT = np.array([-0.4, 0.6, 1.0]) / np.linalg.norm([-0.4, 0.6, 1.0])
ALBEDO = np.array([0.9, 0.65, 0.35], np.float32)
# radius, half-extents, semi-axes: uniform in these
SIZES = dict(sphere=(0.35, 0.75), box=(0.2, 0.5), ellipsoid=(0.2, 0.75))
NEAR_SURFACE = 0.05     # --supervise-3d: std of the Gaussian offset of the points near the surface
                        # (DeepSDF's perturbation)
AMBIENT = 0.25          # shade = AMBIENT + (1 - AMBIENT) * max(0, normal . light): Lambert's law plus a floor

# *** shapes: family, rotation [3,3] (world <- local) and size [3] (radius, half-extents or semi-axes) ***

def random_rotation(rng:np.random.Generator) -> np.ndarray:
  q, r = np.linalg.qr(rng.normal(size=(3, 3)))
  q = q * np.sign(np.diag(r))                  # QR of a Gaussian matrix is a uniformly random orthogonal matrix ...
  return q if np.linalg.det(q) > 0 else -q     # ... and flipping a det -1 one gives a rotation

def random_shape(family:str, rng:np.random.Generator, rotate:bool=False) -> dict:
  """Boxes and ellipsoids sit axis-aligned in a canonical frame, as ShapeNet objects do for SDF-SRN, unless rotate."""
  # sizes keep every point inside the unit sphere: sphere r <= 0.75, box corner <= sqrt(3)*0.5 = 0.87,
  # ellipsoid axes <= 0.75
  size = rng.uniform(*SIZES[family], 1 if family == "sphere" else 3) * np.ones(3)  # a sphere: one radius
  return dict(family=family, rotation=random_rotation(rng) if rotate and family != "sphere" else np.eye(3), size=size)

def shape_sdf(shape:dict, point:np.ndarray) -> np.ndarray:
  """Signed distance (negative inside) at world points [...,3]. Sphere and box are exact. The ellipsoid is a bound:
  k0*(k0-1)/k1 outside (Quilez), close to the distance near the surface, and (k0-1)*min(size) inside, which stays
  negative at the centre where the former is 0/0. Sign and zero set are exact, and they are all that the silhouettes
  and the 3-D metrics use."""
  p = point @ shape["rotation"]                                        # [...,3] local coordinates (R^T p)
  a = shape["size"]
  if shape["family"] == "sphere":
    return np.linalg.norm(p, axis=-1) - a[0]
  if shape["family"] == "box":
    q = np.abs(p) - a
    return np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(-1), 0)
  k0, k1 = np.linalg.norm(p / a, axis=-1), np.linalg.norm(p / a**2, axis=-1)
  return np.where(k0 < 1, (k0 - 1) * a.min(), k0 * (k0 - 1) / np.maximum(k1, 1e-9))

def intersect(shape:dict, origin:np.ndarray, direction:np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Exact first hit of rays [P,3] with the shape: depth [P] (inf on a miss) and world normal [P,3]."""
  o, d, a = origin @ shape["rotation"], direction @ shape["rotation"], shape["size"]   # [P,3] local frame
  if shape["family"] == "box":   # slab test
    with np.errstate(divide="ignore", invalid="ignore"):
      t0, t1 = (-a - o) / d, (a - o) / d                                # [P,3]
    near, far = np.minimum(t0, t1).max(-1), np.maximum(t0, t1).min(-1)  # [P]
    depth = np.where((near <= far) & (far > 0), near, np.inf)
    local = o + np.where(np.isfinite(depth), depth, 0)[:, None] * d
    axis = np.abs(local / a).argmax(-1)                                 # the face hit is the one the point lies on
    normal = np.eye(3)[axis] * np.sign(np.take_along_axis(local, axis[:, None], 1))
  else:                          # sphere and ellipsoid: a unit sphere after scaling by 1/size
    o_unit, d_unit = o / a, d / a
    qa, qb, qc = (d_unit * d_unit).sum(-1), (o_unit * d_unit).sum(-1), (o_unit * o_unit).sum(-1) - 1
    disc = qb * qb - qa * qc
    depth = np.where(disc >= 0, (-qb - np.sqrt(np.maximum(disc, 0))) / qa, np.inf)
    depth = np.where(depth > 0, depth, np.inf)
    normal = (o + np.where(np.isfinite(depth), depth, 0)[:, None] * d) / a**2
  normal = normal @ shape["rotation"].T                                 # [P,3] back to world
  return depth, normal / np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-9)

def surface_points(shape:dict, n:int, rng:np.random.Generator) -> np.ndarray:
  """n points [n,3] uniform by area on the true surface. Box: a face chosen by area, then a uniform point on it.
  Sphere and ellipsoid: size * (uniform direction), kept with probability proportional to the area it stands for."""
  a = shape["size"]
  pair = a.prod() / a                                                                   # [3] a1*a2, a0*a2, a0*a1
  if shape["family"] == "box":
    axis = rng.choice(3, size=n, p=pair / pair.sum())                                  # [n] faces by area
    local = rng.uniform(-1, 1, (n, 3)) * a
    local[np.arange(n), axis] = a[axis] * rng.choice([-1.0, 1.0], size=n)
  else:
    local = np.zeros((0, 3))
    while len(local) < n:
      u = rng.normal(size=(2 * n, 3))
      u /= np.linalg.norm(u, axis=-1, keepdims=True)                                   # [2n,3] uniform directions
      stretch = np.linalg.norm(u * pair, axis=-1)                                     # area element of x = a*u
      local = np.concatenate([local, (a * u)[rng.uniform(0, pair.max(), 2 * n) <= stretch]])
    local = local[:n]
  return local @ shape["rotation"].T

# *** camera ***

def camera(azimuth:float, elevation:float) -> tuple[np.ndarray, np.ndarray]:
  """Camera position [3] and rotation [3,3] (columns: right, up, backward) looking at the origin, y up, degrees."""
  az, el = np.radians(azimuth), np.radians(elevation)
  position = CAMERA_DISTANCE * np.array([np.cos(el) * np.cos(az), np.sin(el), np.cos(el) * np.sin(az)])
  backward = position / np.linalg.norm(position)
  right = np.cross([0.0, 1.0, 0.0], backward)
  right /= np.linalg.norm(right)
  return position, np.stack([right, np.cross(backward, right), backward], 1)

def camera_rays(azimuth:float, elevation:float, res:int) -> tuple[np.ndarray, np.ndarray]:
  """Origin [3] and unit directions [P,3] of the rays through the pixel centres, row-major from the top left."""
  position, rotation = camera(azimuth, elevation)
  s = np.tan(np.radians(FOV_DEGREES / 2)) * ((np.arange(res) + 0.5) / res * 2 - 1)     # [res]
  u, v = np.meshgrid(s, -s)                                                             # [res,res] image plane
  direction = np.stack([u, v, -np.ones_like(u)], -1).reshape(-1, 3) @ rotation.T        # [P,3]
  return position.astype(np.float32), (direction / np.linalg.norm(direction, axis=-1, keepdims=True)).astype(np.float32)

def view_rays(poses:np.ndarray, res:int) -> tuple[np.ndarray, np.ndarray]:
  """Camera rays of a list of poses [...,2]: origins [V,3] and directions [V,P,3], V = the number of poses."""
  rays = [camera_rays(az, el, res) for az, el in poses.reshape(-1, 2)]
  return np.stack([r[0] for r in rays]), np.stack([r[1] for r in rays])

def world_light(azimuth:float, elevation:float) -> np.ndarray:
  return (camera(azimuth, elevation)[1] @ LIGHT).astype(np.float32)          # [3] the light moves with the camera

def world_lights(poses:np.ndarray) -> np.ndarray:
  return np.stack([world_light(az, el) for az, el in poses.reshape(-1, 2)])  # [V,3] for poses [...,2]

def render_view(shape:dict, azimuth:float, elevation:float, res:int) -> tuple[np.ndarray, np.ndarray]:
  """Shaded RGB image [3,res,res] (Lambert + ambient, so the encoder sees depth cues) and binary
  silhouette [res,res]."""
  origin, direction = camera_rays(azimuth, elevation, res)
  depth, normal = intersect(shape, np.broadcast_to(origin, direction.shape), direction)
  hit = np.isfinite(depth)                                                              # [P]
  shade = np.where(hit, AMBIENT + (1 - AMBIENT) * np.clip(normal @ world_light(azimuth, elevation), 0, 1), 0)   # [P]
  image = (ALBEDO[:, None] * shade[None]).reshape(3, res, res)
  return image.astype(np.float32), hit.reshape(res, res).astype(np.float32)

def novel_poses(azimuth:float) -> np.ndarray:
  k = np.arange(NOVEL_VIEWS)
  return np.stack([(azimuth + 30 + 60 * k) % 360, np.where(k % 2 == 0, 20.0, -20.0)], 1)   # [V,2]

def sdf_samples(shape:dict, n:int, rng:np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """n points [n,3] and their true SDF [n] for the 3-D supervised upper bound: half near the surface (DeepSDF's
  perturbed surface points), half uniform in the bounding cube."""
  near = surface_points(shape, n // 2, rng) + rng.normal(0, NEAR_SURFACE, (n // 2, 3))
  point = np.concatenate([near, rng.uniform(-1, 1, (n - n // 2, 3))]).astype(np.float32)
  return point, shape_sdf(shape, point).astype(np.float32)

def make_dataset(n_shapes:int, res:int, seed:int, rotate:bool=False, views:int=1) -> dict:
  """n_shapes shapes balanced over the families, one random input view each plus the fixed novel views. views > 1
  adds views-1 supervision views per shape at random poses (view_*: [S,K,...], view 0 is the input view), drawn from
  their own generator so that the rest of the dataset is the same bytes for any views."""
  rng = np.random.default_rng(seed)
  drawn = [random_shape(FAMILIES[i % len(FAMILIES)], rng, rotate) for i in range(n_shapes)]
  poses = np.stack([rng.uniform(0, 360, n_shapes), rng.uniform(-MAX_ELEVATION, MAX_ELEVATION, n_shapes)], 1)   # [S,2]
  inputs = [render_view(s, *pose, res) for s, pose in zip(drawn, poses)]
  novel = np.stack([novel_poses(az) for az, _ in poses])                                                       # [S,V,2]
  novel_silhouettes = np.stack([[render_view(s, *pose, res)[1] for pose in ps] for s, ps in zip(drawn, novel)])
  data = dict(shapes=drawn, poses=poses.astype(np.float32), images=np.stack([v[0] for v in inputs]),   # [S,3,H,W]
              silhouettes=np.stack([v[1] for v in inputs]), novel_poses=novel.astype(np.float32),      # [S,H,W] [S,V,2]
              novel_silhouettes=novel_silhouettes)                                                     # [S,V,H,W]
  extra_rng = np.random.default_rng([seed, 1])
  extra = np.stack([extra_rng.uniform(0, 360, (n_shapes, views - 1)),
                    extra_rng.uniform(-MAX_ELEVATION, MAX_ELEVATION, (n_shapes, views - 1))], -1)
  data["view_poses"] = np.concatenate([poses[:, None], extra], 1).astype(np.float32)                           # [S,K,2]
  rendered = [[render_view(s, *pose, res) for pose in ps[1:]] for s, ps in zip(drawn, data["view_poses"])]
  data["view_images"] = np.stack(
    [np.stack([data["images"][i]] + [v[0] for v in r]) for i, r in enumerate(rendered)])  # [S,K,3,H,W]
  data["view_silhouettes"] = np.stack(
    [np.stack([data["silhouettes"][i]] + [v[1] for v in r]) for i, r in enumerate(rendered)])  # [S,K,H,W]
  return data
