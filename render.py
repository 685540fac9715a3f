# The fixed differentiable renderer of SDF-SRN (Lin et al. 2020), the bridge from 2-D pixels to 3-D geometry:
# sample points at fixed intervals along each camera ray, query an SDF, and turn the smallest value along the ray
# into a soft silhouette sigmoid(-min_sdf / temperature) (the min-SDF mask of IDR, Yariv et al. 2020).
# Not a network: it takes any sdf_fn and never imports the model. No colour, no depth, no normals.
from typing import Callable
from tinygrad import Tensor

# B images, R rays per image, N samples per ray
BOUND = 1.0   # every shape lies inside this sphere (shapes.py), so samples outside it are wasted

def sample_depths(origin:Tensor, direction:Tensor, samples:int) -> Tensor:
  """Depths [B,R,N] at fixed intervals over the chord of each ray through the bounding sphere. A ray that misses
  the sphere gets all its samples at its point of closest approach to the origin, where no shape can be."""
  middle = -(origin * direction).sum(-1)                                    # [B,R] depth of closest approach (|direction| = 1)
  miss = (origin * origin).sum(-1) - middle * middle                        # [B,R] squared distance of that point from the centre
  half = (BOUND * BOUND - miss).relu().sqrt()                               # [B,R] half chord, 0 on a miss
  step = (Tensor.arange(samples) + 0.5) / samples * 2 - 1                  # [N] in (-1,1)
  return middle.unsqueeze(-1) + half.unsqueeze(-1) * step                   # [B,R,N]

def sample_points(origin:Tensor, direction:Tensor, samples:int) -> Tensor:
  depth = sample_depths(origin, direction, samples)                         # [B,R,N]
  return origin.unsqueeze(-2) + depth.unsqueeze(-1) * direction.unsqueeze(-2)   # [B,R,N,3]

def min_sdf(sdf_fn:Callable[[Tensor], Tensor], origin:Tensor, direction:Tensor, samples:int) -> Tensor:
  """Smallest SDF value along each ray [B,R]. min() passes gradient only to its argmin sample, so every sample is
  evaluated without a graph, and the SDF is evaluated again with gradient at the argmin point alone: the same
  value and the same gradients as autograd through all N samples, for about 1/N of the backward work."""
  point = sample_points(origin, direction, samples)                        # [B,R,N,3]
  sdf = sdf_fn(point).detach()                                              # [B,R,N]
  first = sdf.argmin(-1).one_hot(samples)                                   # [B,R,N] argmin picks one sample per ray
  closest = (point * first.unsqueeze(-1)).sum(-2)                           # [B,R,3]
  return sdf_fn(closest.unsqueeze(-2)).squeeze(-1)                          # [B,R]

def silhouette(sdf:Tensor, temperature:float|Tensor) -> Tensor:
  return (-sdf / temperature).sigmoid()                                     # [B,R] from min_sdf: soft "some sample is inside"
