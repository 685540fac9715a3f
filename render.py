# The fixed differentiable renderer of SDF-SRN (Lin et al. 2020), the bridge from 2-D pixels to 3-D geometry: samples at
# fixed intervals along each ray, an SDF queried there, the soft silhouette sigmoid(-min_sdf / temperature) (IDR's
# min-SDF mask, Yariv et al. 2020); and every other picture of an SDF: first surface crossing, normal, Lambert shading,
# meshes. Not a network: it takes any sdf_fn and never imports the model.
from typing import Callable
import numpy as np
from tinygrad import Tensor
import shapes

# B images, R rays per image, N samples per ray
BOUND = 1.0        # every shape lies inside this sphere (shapes.py), so samples outside it are wasted
SCORE_TEMPERATURE = 0.01   # the paper's silhouette MSE is scored at this temperature (training anneals down to it)
BISECTIONS = 4     # halvings of the bracketing interval of the first crossing (chord/N/16, under 6e-3 at N = 24)
                   # before a secant step
NORMAL_EPS = 1e-2  # central-difference step for normals: any sdf_fn works (numpy ground truth too), and a ReLU
                   # decoder's exact gradient is piecewise constant, so a step of about a grid cell smooths it
SdfFn = Callable[[Tensor], Tensor]   # points [...,3] -> SDF [...]

def sample_depths(origin:Tensor, direction:Tensor, samples:int) -> Tensor:
  """Depths [B,R,N] at fixed intervals over the chord of each ray through the bounding sphere. A ray that misses
  the sphere gets all its samples at its point of closest approach to the origin, where no shape can be."""
  middle = -(origin * direction).sum(-1)                   # [B,R] depth of closest approach (|direction| = 1)
  miss = (origin * origin).sum(-1) - middle * middle       # [B,R] squared distance of that point from the centre
  half = (BOUND * BOUND - miss).relu().sqrt()              # [B,R] half chord, 0 on a miss
  step = (Tensor.arange(samples) + 0.5) / samples * 2 - 1  # [N] in (-1,1)
  return middle.unsqueeze(-1) + half.unsqueeze(-1) * step  # [B,R,N]

def meets_bound(origin:np.ndarray, direction:np.ndarray) -> np.ndarray:
  """Whether each ray [V,P] of origins [V,3] and unit directions [V,P,3] meets the bounding sphere. One that misses has
  all its samples on one point outside every shape (sample_depths): the renderer's picture there is background."""
  middle = -(origin[:, None] * direction).sum(-1)                           # [V,P]
  return (origin * origin).sum(-1)[:, None] - middle * middle < BOUND * BOUND

def at(origin:Tensor, direction:Tensor, depth:Tensor) -> Tensor:
  """point = origin + depth * direction: [B,1,3], [B,R,3], [B,R,...] -> [B,R,...,3]."""
  extra = depth.ndim - direction.ndim + 1
  return (origin.reshape(*origin.shape[:-1], *[1] * extra, 3)
          + depth.unsqueeze(-1) * direction.reshape(*direction.shape[:-1], *[1] * extra, 3))

def sample_points(origin:Tensor, direction:Tensor, samples:int) -> Tensor:
  return at(origin, direction, sample_depths(origin, direction, samples))   # [B,R,N,3]

def march(sdf_fn:SdfFn, origin:Tensor, direction:Tensor, samples:int) -> tuple[Tensor, Tensor]:
  """The sample depths [B,R,N] and the SDF there [B,R,N], without a graph: min_sdf and surface pick from them."""
  depth = sample_depths(origin, direction, samples)                         # [B,R,N]
  return depth, sdf_fn(at(origin, direction, depth)).detach()

def min_sdf(sdf_fn:SdfFn, origin:Tensor, direction:Tensor, depth:Tensor, sdf:Tensor) -> Tensor:
  """Smallest SDF value along each ray [B,R], from march's samples. min() passes gradient only to its argmin sample,
  so the SDF is evaluated again with gradient at the argmin point alone: the same value and the same gradients as
  autograd through all N samples, for about 1/N of the backward work."""
  first = sdf.argmin(-1).one_hot(sdf.shape[-1])                             # [B,R,N] argmin picks one sample per ray
  return sdf_fn(at(origin, direction, (depth * first).sum(-1)))            # [B,R]

def silhouette(sdf:Tensor, temperature:float|Tensor) -> Tensor:
  return (-sdf / temperature).sigmoid()  # [B,R] from min_sdf: soft "some sample is inside"

def surface(sdf_fn:SdfFn, origin:Tensor, direction:Tensor, depth:Tensor, sdf:Tensor) -> tuple[Tensor, Tensor]:
  """Depth of the first surface crossing along each ray [B,R] and whether there is one [B,R], without a graph: the
  first sample inside brackets the crossing with the sample before it, BISECTIONS halvings narrow the bracket, and a
  final secant step interpolates linearly inside it."""
  inside = sdf < 0                                                       # [B,R,N]
  hit = inside.any(-1)                                                   # [B,R]
  first = (inside.cumsum(-1) == 1) & inside                              # [B,R,N] one-hot of the first sample inside
  before = first[..., 1:].pad(((0, 0),) * (first.ndim - 1) + ((0, 1),))  # [B,R,N] one-hot of the sample before it
  far, far_sdf = (depth * first).sum(-1), (sdf * first).sum(-1)          # [B,R] inside end of the bracket
  near = (depth * before).sum(-1) + far * (1 - before.sum(-1))           # [B,R] the inside end itself if it is sample 0
  near_sdf = (sdf * before).sum(-1) + far_sdf * (1 - before.sum(-1))
  for _ in range(BISECTIONS):
    # the bracket in one buffer: computed once, not in each halving's kernels, and every halving's kernels alike
    # (compiled once)
    near, near_sdf, far, far_sdf = Tensor.stack(near, near_sdf, far, far_sdf).contiguous()
    middle = (near + far) / 2
    value = sdf_fn(at(origin, direction, middle)).detach()               # [B,R]
    near, near_sdf = (value < 0).where(near, middle), (value < 0).where(near_sdf, value)
    far, far_sdf = (value < 0).where(middle, far), (value < 0).where(value, far_sdf)
  secant = near + (far - near) * near_sdf / (near_sdf - far_sdf).maximum(1e-9)
  return hit.where(secant, 0).detach(), hit

def normal(sdf_fn:SdfFn, point:Tensor) -> Tensor:
  """Unit normals [...,3] at points [...,3]: the SDF's gradient by central differences, differentiable in sdf_fn."""
  offset = Tensor.eye(3) * NORMAL_EPS                                       # [3,3]
  probe = point.unsqueeze(-2) + offset.cat(-offset)                         # [...,6,3]
  value = sdf_fn(probe)                                                     # [...,6]
  gradient = value[..., :3] - value[..., 3:]                                # [...,3]
  return gradient / (gradient * gradient).sum(-1, keepdim=True).sqrt().maximum(1e-9)

def lambert(unit_normal:Tensor, light:Tensor) -> Tensor:
  """Shade [...] from unit normals [...,3] and the light [...,3] in world coordinates: shapes.render_view's formula, in
  tinygrad, so the network's pictures and the photometric loss shade as the input images do."""
  return shapes.AMBIENT + (1 - shapes.AMBIENT) * (unit_normal * light).sum(-1).clip(0, 1)

def shaded(sdf_fn:SdfFn, origin:Tensor, direction:Tensor, light:Tensor, samples:int) -> Tensor:
  """RGB [B,R,3] of the first surface along each ray, Lambert-shaded with the input images' light [B,3] and albedo,
  black where the ray finds no surface."""
  depth, hit = surface(sdf_fn, origin, direction, *march(sdf_fn, origin, direction, samples))   # [B,R]
  shade = lambert(normal(sdf_fn, at(origin, direction, depth)), light.unsqueeze(1))                # [B,R]
  return hit.where(shade, 0).unsqueeze(-1) * Tensor(shapes.ALBEDO)         # [B,R,3]

def surface_nets(sdf:np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mesh of the zero set of a grid SDF [G,G,G] sampled at the cell centres of [-BOUND,BOUND]^3: one vertex in every
  cube of 8 samples whose signs differ, at the mean of its edge crossings; two triangles for every grid edge whose sign
  changes, joining the four cubes around it, wound so normals point outside. Vertices [V,3], triangles [F,3]; closed
  if the surface stays inside the grid."""
  n = sdf.shape[0]
  corner = np.array([(i, j, k) for i in (0, 1) for j in (0, 1) for k in (0, 1)])  # [8,3]
  # [12,2]
  edge = np.array([(a, b) for a in range(8) for b in range(a + 1, 8) if np.abs(corner[a] - corner[b]).sum() == 1])
  inside = sdf < 0                                                                # [G,G,G]
  # [C,C,C,8] C = G-1 cubes
  signs = np.stack([inside[i:n - 1 + i, j:n - 1 + j, k:n - 1 + k] for i, j, k in corner], -1)
  cube = np.argwhere(signs.any(-1) & ~signs.all(-1))                              # [V,3] the cubes with a vertex
  index = np.full(signs.shape[:3], -1)                                            # [C,C,C] vertex of each cube
  index[tuple(cube.T)] = np.arange(len(cube))
  # [V,8] these cubes only: the grid has far more
  value = sdf[tuple((cube[:, None] + corner).transpose(2, 0, 1))]
  sa, sb = value[:, edge[:, 0]], value[:, edge[:, 1]]                             # [V,12]
  cross = (sa < 0) != (sb < 0)
  t = np.where(cross, sa / np.where(cross, sa - sb, 1), 0)[..., None]             # [V,12,1]
  point = corner[edge[:, 0]] + t * (corner[edge[:, 1]] - corner[edge[:, 0]])      # [V,12,3]
  local = (point * cross[..., None]).sum(-2) / cross.sum(-1, keepdims=True)       # [V,3] inside its cube
  vertices = ((cube + local + 0.5) / n * 2 - 1) * BOUND                           # [V,3] world
  faces = []
  for a in range(3):   # edges along axis a; (a, b, c) is a cyclic order, so the quad below winds around +a
    b, c = (a + 1) % 3, (a + 2) % 3
    along, vertex = inside.transpose(a, b, c), index.transpose(a, b, c)
    start = along[:-1, 1:-1, 1:-1]
    p = np.argwhere(start != along[1:, 1:-1, 1:-1])                               # [E,3] edge p -> p + e_a
    # [E,4]
    quad = np.stack([vertex[p[:, 0], p[:, 1] + db, p[:, 2] + dc] for db, dc in ((0, 0), (1, 0), (1, 1), (0, 1))], -1)
    quad = np.where(start[tuple(p.T)][:, None], quad, quad[:, ::-1])              # inside -> outside is +a
    faces += [quad[:, [0, 1, 2]], quad[:, [0, 2, 3]]]
  return vertices.astype(np.float32), np.concatenate(faces).reshape(-1, 3)
