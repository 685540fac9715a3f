# Tests for fast.py: each fast layer equals its plain tensor-API parent (values and gradients, every branch), a whole
# jitted training step with the fast layers equals one without, the fast kernels really ran (so no test here compares
# the plain path with itself), and checkpoints move between the two. The CPU device only: elsewhere the fast layers
# are their parents.
import os, sys
import numpy as np
import pytest
from tinygrad import Device, Tensor, nn
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import fast, sdfsrn, shapes, train

pytestmark = pytest.mark.skipif(Device.DEFAULT != "CPU", reason="the fast kernels run on the CPU device only")

class Kernels:
  """The names of the kernels tinygrad schedules while in use: the proof that the fast kernels ran."""
  def __enter__(self):
    self.names, self.schedule = set(), Tensor.linear_with_vars
    def spy(tensor, *more):
      linear, var_vals = self.schedule(tensor, *more)
      self.names.update(str(getattr(call.src[0].arg, "name", "")) for call in linear.src)
      return linear, var_vals
    Tensor.linear_with_vars = spy
    return self

  def __exit__(self, *_):
    Tensor.linear_with_vars = self.schedule

  def tiled(self) -> bool:
    return any(name.startswith("tiled_") for name in self.names)

def assert_same_layer(plain, x:Tensor):
  """fast.swapped(plain) against plain: the output and the gradients of input, weight and bias."""
  kind = {nn.Conv2d: fast.PatchConv2d, nn.Linear: fast.TiledLinear, sdfsrn.Dense: fast.TiledDense}[type(plain)]
  quick = fast.swapped(plain, kind)
  wrt = [x, plain.weight, plain.bias]
  ours, theirs = quick(x), plain(x)
  cotangent = Tensor.randn(*theirs.shape).realize()   # the gradients first: tinygrad forgets a realised tensor's graph
  with Kernels() as kernels:
    gradients = (ours * cotangent).sum().gradient(*wrt)
    for a, b in zip(gradients, (theirs * cotangent).sum().gradient(*wrt)):
      np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-5)
  return kernels

# *** each layer ***

@pytest.mark.parametrize("channels, height, tiled", [(6, 8, True), (5, 8, True), (6, 6, False)])
def test_patch_convolution_equals_conv2d(channels, height, tiled):
  # 6 channels: both gradients tiled(); 5 (odd): the patch gradient tinygrad's; 2 images of 6x10 pixels: 30 patches,
  # not a multiple of 4 rows, so the plain patch product
  conv, image = nn.Conv2d(channels, 8, 2, stride=2), Tensor.randn(2, channels, height, 10).realize()
  assert assert_same_layer(conv, image).tiled() == tiled

@pytest.mark.parametrize("rows, tiled", [(1, False), (3, True), (10, True)])   # 10: 5 rows at a time
def test_tiled_linear_equals_nn_linear(rows, tiled):
  assert assert_same_layer(nn.Linear(64, 16), Tensor.randn(rows, 64).realize()).tiled() == tiled

@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("points, outputs", [(35, 16), (12, 64), (6, 24)])   # 35, 6: padded to 4 rows; 24: tiles of 8
def test_tiled_dense_equals_dense(relu, points, outputs):
  layer = sdfsrn.Dense(16, outputs, relu=relu)
  assert assert_same_layer(layer, Tensor.randn(2, points, 16).realize()).tiled()

# *** the whole model ***

def step_of(install:bool, **flags):
  data = shapes.make_dataset(3, 16, 0, views=flags.get("views", 1))
  Tensor.manual_seed(0)
  model = sdfsrn.SDFSRN(16, latent=8, width=16, symmetric=flags.get("symmetric", False))
  if install:
    fast.install(model)
  opt = nn.optim.Adam(nn.state.get_parameters(model), lr=3e-3)
  device = train.device_data(data)
  return model, train.make_step(model, opt, device, 6, flags.get("shading", 0.0))

# the shading term's surface search branches on signs (inside or not), which float rounding can flip on a sample that
# sits on the surface: there an Adam step of up to lr (3e-3) may differ, so a looser bound
@pytest.mark.parametrize("flags, atol", [({}, 1e-6), (dict(symmetric=True, shading=1.0), 3e-4)])
def test_jitted_steps_with_fast_layers_equal_plain_ones(flags, atol):
  # four steps (the jit replays from the third) on changing batches: the same losses and parameters
  rng = np.random.default_rng(0)
  batches = [(np.arange(3, dtype=np.int32), np.arange(3, dtype=np.int32), rng.integers(0, 16, (3, 16), dtype=np.int32),
              0.05 - 0.01 * i, 3e-3) for i in range(4)]
  results = []
  for install in (False, True):
    model, step = step_of(install, **flags)
    with Kernels() as kernels:
      losses = [step(*batch) for batch in batches]
    assert kernels.tiled() == install
    results.append((losses, [p.numpy() for p in nn.state.get_parameters(model)]))
  (plain_losses, plain), (fast_losses, quick) = results
  np.testing.assert_allclose(fast_losses, plain_losses, rtol=1e-5)
  for a, b in zip(quick, plain):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=atol)

def test_checkpoints_move_between_fast_and_plain_models(tmp_path):
  Tensor.manual_seed(0)
  quick = fast.install(sdfsrn.SDFSRN(16, latent=8, width=16))
  Tensor.manual_seed(1)
  plain = sdfsrn.SDFSRN(16, latent=8, width=16)
  for source, target in ((quick, plain), (plain, quick)):
    for p in nn.state.get_parameters(source):
      p.assign(Tensor.randn(*p.shape)).realize()
    path = str(tmp_path / "model.safetensors")
    sdfsrn.save_checkpoint(path, source, nn.optim.Adam(nn.state.get_parameters(source)), 1, {}, [])
    sdfsrn.load_checkpoint(path, target)
    for a, b in zip(nn.state.get_parameters(source), nn.state.get_parameters(target)):
      np.testing.assert_array_equal(a.numpy(), b.numpy())

def test_write_fills_a_realised_tensor_in_place():
  t = Tensor(np.zeros(5, np.float32)).realize()
  buffer = t.uop.buffer
  fast.write([t], [np.arange(5.0)])   # float64 in, float32 stored
  assert t.uop.buffer is buffer and t.numpy().tolist() == [0, 1, 2, 3, 4]
