# The Mini SDF-SRN model: a CNN encoder maps one image to a latent code, and a shared DeepSDF-style decoder (Park et
# al. 2019) maps [latent, xyz] to a signed distance. Trained only through the silhouettes of render.py (see train.py).
# Leaves out SDF-SRN's hypernetwork (its encoder emits decoder weights), its learned LSTM ray marcher and its colour branch.
import math
from tinygrad import Tensor, nn

# B images, L latent size, C width of the decoder, ... any number of point axes (R rays, N samples)
LATENT = 128
WIDTH = 64
INIT_RADIUS = 0.5   # the decoder starts as the SDF of a sphere of this radius

class Encoder:
  """Four stride-2 convolutions (3->32->64->128->256) and two fully connected layers: [B,3,H,W] -> [B,L]."""
  def __init__(self, res:int=64, latent:int=LATENT):
    self.layers = [nn.Conv2d(3, 32, 2, stride=2), Tensor.relu, nn.Conv2d(32, 64, 2, stride=2), Tensor.relu,
                   nn.Conv2d(64, 128, 2, stride=2), Tensor.relu, nn.Conv2d(128, 256, 2, stride=2), Tensor.relu,
                   lambda x: x.flatten(1), nn.Linear(256 * (res // 16) ** 2, 256), Tensor.relu, nn.Linear(256, latent)]
  def __call__(self, image:Tensor) -> Tensor: return image.sequential(self.layers)   # [B,3,H,W] -> [B,256,H/16,W/16] -> [B,L]

class Decoder:
  """Five linear layers; the third re-reads the input [latent, xyz] (DeepSDF's skip). The latent enters the first and
  third layers only through a matrix product that does not depend on the point, so it is computed once per shape and
  broadcast: the same function as concatenating the latent to every point, without L*C work per point."""
  def __init__(self, latent:int=LATENT, width:int=WIDTH):
    self.latent, self.width = latent, width
    self.layers = [nn.Linear(latent + 3, width), nn.Linear(width, width), nn.Linear(width + latent + 3, width),
                   nn.Linear(width, width), nn.Linear(width, 1)]
    # Geometric initialisation (Atzmon & Lipman, SAL 2020; as in IGR/IDR): the decoder starts as roughly |x| - INIT_RADIUS
    # whatever the latent. From the default initialisation the SDF is nearly constant, every silhouette is all empty
    # or all full, the sigmoid saturates and no gradient reaches the decoder (SDF-SRN issue 5).
    for layer in self.layers[:-1]:
      layer.weight = Tensor.normal(*layer.weight.shape, std=math.sqrt(2 / width))
      layer.bias = Tensor.zeros(width)
    first, skip, last = self.layers[0], self.layers[2], self.layers[-1]
    first.weight = first.weight * (Tensor.arange(latent + 3) >= latent)                   # latent columns start at 0 ...
    skip.weight = skip.weight * ((Tensor.arange(width + latent + 3) < width) | (Tensor.arange(width + latent + 3) >= width + latent))
    skip.weight = skip.weight / math.sqrt(2)       # ... and IGR's concat/sqrt(2) at the skip, folded into the weights
    last.weight = Tensor.normal(1, width, mean=math.sqrt(math.pi / width), std=1e-4)
    last.bias = Tensor([-INIT_RADIUS])

  def __call__(self, latent:Tensor, point:Tensor) -> Tensor:
    """SDF [B,...] at points [B,...,3] of shape latent [B,L]."""
    first, second, skip, fourth, last = self.layers
    L, C = self.latent, self.width
    # .contiguous() before each matrix product: otherwise tinygrad fuses two of them into one kernel that recomputes
    # the first for every output of the second (measured 2x slower on the CPU)
    latent = latent.reshape(latent.shape[0], *[1] * (point.ndim - 2), L)                       # [B,1..,L]
    x = point.linear(first.weight[:, L:].T, latent.linear(first.weight[:, :L].T, first.bias)).relu()   # [B,...,C]
    x = second(x.contiguous()).relu()                                                              # [B,...,C]
    again = point.linear(skip.weight[:, C + L:].T, latent.linear(skip.weight[:, C:C + L].T, skip.bias))
    x = x.contiguous().linear(skip.weight[:, :C].T, again).relu()                                  # [B,...,C] skip
    x = fourth(x.contiguous()).relu()                                                              # [B,...,C]
    return last(x.contiguous()).squeeze(-1)                                                        # [B,...]

class SDFSRN:
  def __init__(self, res:int=64, latent:int=LATENT, width:int=WIDTH):
    self.encoder, self.decoder = Encoder(res, latent), Decoder(latent, width)
    Tensor.realize(*nn.state.get_parameters(self))   # the initialisations above are lazy expressions until now
