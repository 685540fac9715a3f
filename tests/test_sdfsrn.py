# Tests for Mini SDF-SRN: analytic answers for data and renderer, gradients against full autograd and finite
# differences, the shapes the comments claim, and tiny end-to-end runs. Sizes are tiny so the suite runs in minutes
# on 2 cores.
import argparse, json, os, signal, subprocess, sys
import numpy as np
import pytest
from PIL import Image
from tinygrad import Context, Tensor, nn
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import evaluate, figures, render, sdfsrn, shapes, train, workers
from sdfsrn import SDFSRN

def tiny_model(res=16, width=16, seed=0) -> SDFSRN:
  Tensor.manual_seed(seed)
  return SDFSRN(res, latent=8, width=width)

def rays(azimuth=30.0, elevation=10.0, res=16, views=1):
  origin, direction = shapes.camera_rays(azimuth, elevation, res)
  return Tensor(np.tile(origin, (views, 1, 1))), Tensor(np.tile(direction, (views, 1, 1)))   # [B,1,3] [B,R,3]

# *** shapes ***

def test_sphere_sdf_is_exact():
  sphere = dict(family="sphere", rotation=np.eye(3), size=np.full(3, 0.5))
  np.testing.assert_allclose(shapes.shape_sdf(sphere, np.array([[0, 0, 0], [1, 0, 0], [0, 0.2, 0]])),
                             [-0.5, 0.5, -0.3], atol=1e-12)

def test_rotated_box_sdf_is_exact():
  c, s = np.cos(0.3), np.sin(0.3)
  box = dict(family="box", rotation=np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]), size=np.array([0.2, 0.3, 0.4]))
  local = np.array([[0, 0, 0], [0.5, 0, 0], [0.5, 0.7, 0], [0.1, 0.1, 0.1]])   # centre, face, edge, inside
  np.testing.assert_allclose(shapes.shape_sdf(box, local @ box["rotation"].T), [-0.2, 0.3, 0.5, -0.1], atol=1e-12)

def test_ellipsoid_sdf_sign_and_surface():
  ellipsoid = dict(family="ellipsoid", rotation=np.eye(3), size=np.array([0.3, 0.5, 0.7]))
  np.testing.assert_allclose(shapes.shape_sdf(ellipsoid, np.array([[0.3, 0, 0], [0, 0.5, 0], [0, 0, 0.7]])),
                             0, atol=1e-12)
  # exact on an axis
  np.testing.assert_allclose(shapes.shape_sdf(ellipsoid, np.array([[0.5, 0, 0]])), [0.2], atol=1e-12)
  assert shapes.shape_sdf(ellipsoid, np.zeros((1, 3)))[0] < 0

def test_shapes_fit_in_bounding_sphere_and_rotate_only_when_asked():
  for rotate in (False, True):
    for shape in shapes.make_dataset(30, 16, seed=3, rotate=rotate)["shapes"]:
      # corner or longest axis
      farthest = np.linalg.norm(shape["size"]) if shape["family"] == "box" else shape["size"].max()
      assert farthest < render.BOUND
      R = shape["rotation"]
      np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
      np.testing.assert_allclose(np.linalg.det(R), 1)
      assert np.allclose(R, np.eye(3)) == (not rotate or shape["family"] == "sphere")

def test_families_balanced():
  assert [s["family"] for s in shapes.make_dataset(6, 16, 0)["shapes"]] == ["sphere", "box", "ellipsoid"] * 2

def test_extra_views_leave_the_input_view_alone():
  one, three = shapes.make_dataset(4, 16, 7), shapes.make_dataset(4, 16, 7, views=3)
  for k in ("images", "silhouettes", "poses", "novel_silhouettes"):
    assert one[k].tobytes() == three[k].tobytes()
  assert three["view_images"].shape == (4, 3, 3, 16, 16) and three["view_silhouettes"].shape == (4, 3, 16, 16)
  np.testing.assert_array_equal(three["view_images"][:, 0], one["images"])
  np.testing.assert_array_equal(three["view_poses"][:, 0], one["poses"])
  assert not np.allclose(three["view_poses"][:, 1], three["view_poses"][:, 0])

def test_same_seed_same_bytes():
  a, b, c = shapes.make_dataset(4, 16, 7), shapes.make_dataset(4, 16, 7), shapes.make_dataset(4, 16, 8)
  for k in ("images", "silhouettes", "poses", "novel_silhouettes"):
    assert a[k].tobytes() == b[k].tobytes()
  assert a["images"].tobytes() != c["images"].tobytes()

def test_novel_views_never_the_training_view():
  data = shapes.make_dataset(9, 16, 1)
  # [S,V] azimuth difference
  gap = np.abs((data["novel_poses"][:, :, 0] - data["poses"][:, None, 0] + 180) % 360 - 180)
  assert data["novel_poses"].shape == (9, shapes.NOVEL_VIEWS, 2) and gap.min() >= 29.9

def test_a_box_seen_a_quarter_turn_later_is_its_twin_to_the_bit():
  # the pose ambiguity: the box (a,b,c) from azimuth t and the box (c,b,a) from t + 90 give the same image, shading and
  # all (the light turns with the camera); the swapped box from the same azimuth does not
  for family, size in (("box", [0.2, 0.35, 0.5]), ("ellipsoid", [0.25, 0.4, 0.7])):
    shape = dict(family=family, rotation=np.eye(3), size=np.array(size))
    twin = dict(family=family, rotation=np.eye(3), size=np.array(size[::-1]))
    for azimuth, elevation in ((10.0, 20.0), (75.0, -25.0), (200.0, 5.0)):
      image, silhouette = shapes.render_view(shape, azimuth, elevation, 64)
      twin_image, twin_silhouette = shapes.render_view(twin, azimuth + 90, elevation, 64)
      np.testing.assert_array_equal(twin_image, image)
      np.testing.assert_array_equal(twin_silhouette, silhouette)
      assert (shapes.render_view(twin, azimuth, elevation, 64)[1] != silhouette).sum() > 50

def test_dataset_shapes_and_dtypes():
  data = shapes.make_dataset(5, 32, 0)
  assert data["images"].shape == (5, 3, 32, 32) and data["silhouettes"].shape == (5, 32, 32)
  assert data["novel_silhouettes"].shape == (5, 6, 32, 32)
  assert all(data[k].dtype == np.float32
             for k in ("images", "silhouettes", "poses", "novel_poses", "novel_silhouettes"))

def test_ground_truth_silhouette_of_sphere_is_disc():
  sphere = dict(family="sphere", rotation=np.eye(3), size=np.full(3, 0.6))
  origin, direction = shapes.camera_rays(40, 20, 64)
  closest = np.linalg.norm(np.cross(direction, -origin), axis=-1)                    # [P] ray's distance to the centre
  np.testing.assert_array_equal(shapes.render_view(sphere, 40, 20, 64)[1].reshape(-1), closest < 0.6)

# *** render ***

SPHERE = dict(family="sphere", rotation=np.eye(3), size=np.full(3, 0.5))
def sphere_sdf(p):
  return (p * p).sum(-1).sqrt() - 0.5

def test_surface_crossing_and_normal_of_sphere_are_exact():
  origin, direction = rays(25, -15, res=32)
  depth, hit = render.surface(sphere_sdf, origin, direction, *render.march(sphere_sdf, origin, direction, 24))   # [1,R]
  o, d = origin.numpy()[0, 0], direction.numpy()[0]
  exact, exact_normal = shapes.intersect(SPHERE, np.broadcast_to(o, d.shape), d)
  closest = np.linalg.norm(np.cross(d, -o), axis=-1)         # [R] ray's distance to the centre
  hit, clear = hit.numpy()[0], np.abs(closest - 0.5) > 0.02   # a grazing ray may pass between samples
  np.testing.assert_array_equal(hit[clear], np.isfinite(exact)[clear])
  np.testing.assert_allclose(depth.numpy()[0][hit], exact[hit], atol=1e-4)
  normal = render.normal(sphere_sdf, render.at(origin, direction, depth)).numpy()[0]   # [R,3]
  np.testing.assert_allclose(normal[hit], exact_normal[hit], atol=1e-3)

def test_shaded_sphere_follows_lambert_and_is_black_off_the_disc():
  origin, direction = rays(25, -15, res=33)      # odd: the centre pixel looks at the centre
  light = shapes.world_light(25, -15)
  rgb = render.shaded(sphere_sdf, origin, direction, Tensor(light[None]), 24).numpy()[0]   # [R,3]
  facing = -direction.numpy()[0, 33 * 16 + 16]   # the normal at the centre pixel's hit
  shade = shapes.AMBIENT + (1 - shapes.AMBIENT) * max(0.0, float(facing @ light))
  np.testing.assert_allclose(rgb[33 * 16 + 16], shapes.ALBEDO * shade, rtol=1e-4)
  closest = np.linalg.norm(np.cross(direction.numpy()[0], -origin.numpy()[0, 0]), axis=-1)
  assert (rgb[closest > 0.52] == 0).all() and (rgb[closest < 0.48] > 0).all()
  clear = np.abs(closest - 0.5) > 0.02           # a grazing ray may pass between samples
  # = the data's picture
  np.testing.assert_allclose(rgb[clear], shapes.render_view(SPHERE, 25, -15, 33)[0].reshape(3, -1).T[clear], atol=1e-3)

def test_samples_lie_on_ray_inside_bound():
  origin, direction = rays(res=16)
  point = render.sample_points(origin, direction, 8).numpy()                         # [1,R,N,3]
  assert point.shape == (1, 256, 8, 3)
  distance = np.linalg.norm(point, axis=-1)[0]                                        # [R,N]
  hit = distance.min(-1) < render.BOUND
  # chord samples stay inside the bound
  assert 0 < hit.sum() < 256 and distance[hit].max() <= render.BOUND + 1e-5
  np.testing.assert_allclose(point[0, ~hit], np.repeat(point[0, ~hit][:, :1], 8, 1))  # a miss: all at closest approach

def test_sphere_silhouette_matches_analytic_disc():
  origin, direction = rays(25, -15, res=64)
  def sphere(p):
    return (p * p).sum(-1).sqrt() - 0.5
  sdf = render.min_sdf(sphere, origin, direction, *render.march(sphere, origin, direction, 32))   # [1,P]
  mask = render.silhouette(sdf, 0.01).numpy()[0] > 0.5
  truth = shapes.render_view(dict(family="sphere", rotation=np.eye(3), size=np.full(3, 0.5)),
                             25, -15, 64)[1].reshape(-1) > 0
  assert (mask & truth).sum() / (mask | truth).sum() >= 0.98

def test_min_sdf_equals_min_over_samples():
  model, (origin, direction) = tiny_model(), rays(views=2)
  latent = Tensor.randn(2, 8)
  def sdf_fn(p):
    return model.decoder(latent, p)
  np.testing.assert_allclose(render.min_sdf(sdf_fn, origin, direction,
                                            *render.march(sdf_fn, origin, direction, 12)).numpy(),
                             sdf_fn(render.sample_points(origin, direction, 12)).min(-1).numpy(), rtol=1e-5, atol=1e-6)

def test_argmin_gradient_equals_full_autograd():
  model, (origin, direction) = tiny_model(), rays(views=2)
  latent, target = Tensor.randn(2, 8), Tensor.rand(2, 256).round()
  def grads(sdf_of):
    params = nn.state.get_parameters(model.decoder) + [latent]
    loss = (-sdf_of(lambda p: model.decoder(latent, p)) / 0.05).binary_crossentropy_logits(target)
    return [g.numpy() for g in loss.gradient(*params)]
  fast = grads(lambda f: render.min_sdf(f, origin, direction, *render.march(f, origin, direction, 12)))
  full = grads(lambda f: f(render.sample_points(origin, direction, 12)).min(-1))
  for a, b in zip(fast, full):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)

def test_gradient_matches_finite_differences():
  model, (origin, direction) = tiny_model(), rays(views=1)
  latent = np.random.default_rng(0).normal(size=(1, 8)).astype(np.float32)
  def loss(z):
    def sdf_fn(p):
      return model.decoder(z, p)
    return render.silhouette(render.min_sdf(sdf_fn, origin, direction, *render.march(sdf_fn, origin, direction, 16)),
                             0.1).mean()
  z = Tensor(latent)
  analytic = loss(z).gradient(z)[0].numpy()[0]
  eps = 1e-2
  for i in range(8):
    up, down = latent.copy(), latent.copy()
    up[0, i] += eps
    down[0, i] -= eps
    numeric = (loss(Tensor(up)).item() - loss(Tensor(down)).item()) / (2 * eps)
    np.testing.assert_allclose(analytic[i], numeric, rtol=5e-2, atol=2e-4)

# *** model ***

def test_model_shapes():
  model = tiny_model(res=32)
  image = Tensor.rand(3, 3, 32, 32)
  latent = model.encoder(image)
  assert latent.shape == (3, 8)
  assert model.decoder(latent, Tensor.rand(3, 5, 7, 3)).shape == (3, 5, 7)
  assert model.decoder(latent, Tensor.rand(3, 5, 3)).shape == (3, 5)

def test_latent_precompute_equals_concatenation():
  # the same function and gradients as DeepSDF's concatenated layers
  model, latent, point = tiny_model(), Tensor.randn(2, 8).realize(), Tensor.randn(2, 5, 7, 3).realize()
  for p in nn.state.get_parameters(model.decoder):
    p.assign(Tensor.randn(*p.shape) * 0.3)   # the latent's weights non-zero too
  ours, concat = model.decoder(latent, point), sdfsrn.ConcatDecoder(model.decoder)(latent, point)
  # gradients first: tinygrad forgets a realised tensor's graph
  wrt = nn.state.get_parameters(model.decoder) + [latent, point]
  for a, b in zip(ours.square().sum().gradient(*wrt), concat.square().sum().gradient(*wrt)):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4 * np.abs(b.numpy()).max())
  np.testing.assert_allclose(ours.numpy(), concat.numpy(), rtol=1e-4, atol=1e-5)

def test_symmetric_decoder_is_mirror_symmetric():
  model = tiny_model()
  model.symmetric = True
  for p in nn.state.get_parameters(model.decoder):
    p.assign(Tensor.randn(*p.shape) * 0.3)
  latent, point = Tensor.randn(2, 8), Tensor.randn(2, 50, 3)
  sdf = model.sdf(latent, point).numpy()
  for mirror in ([-1, 1, 1], [1, -1, 1], [1, 1, -1], [-1, -1, -1]):
    np.testing.assert_allclose(model.sdf(latent, point * Tensor(mirror)).numpy(), sdf, rtol=1e-6)
  model.symmetric = False
  assert not np.allclose(model.sdf(latent, point * Tensor([-1, 1, 1])).numpy(), sdf)   # the plain decoder is not

@pytest.mark.parametrize("symmetric", [False, True])
def test_pose_queries_the_decoder_in_the_quarter_turned_frame(symmetric):
  model = SDFSRN(16, latent=8, width=16, symmetric=symmetric, pose="turn")
  for p in nn.state.get_parameters(model.decoder):
    p.assign(Tensor.randn(*p.shape) * 0.3).realize()
  image, point = Tensor.rand(4, 3, 16, 16), np.random.default_rng(0).normal(size=(4, 9, 3)).astype(np.float32)
  pose = Tensor([[10.0, 5.0], [100.0, -20.0], [190.0, 0.0], [359.0, 30.0]])            # quarter-turns 0, 1, 2, 3
  code = model.encode(image, pose)
  assert code.shape == (4, 10)
  sdf = model.sdf(code, Tensor(point)).numpy()                                          # [4,9]
  for k in range(4):   # the frame turned by 90k about y: the camera at azimuth t is at t - 90k there
    c, s = round(np.cos(np.pi / 2 * k)), round(np.sin(np.pi / 2 * k))
    turned = point[k] @ np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]], np.float32)        # [9,3]
    if symmetric:
      turned = np.abs(turned)
    expected = model.decoder(code[k:k + 1, :8], Tensor(turned[None])).numpy()[0]
    np.testing.assert_allclose(sdf[k], expected, rtol=1e-5, atol=1e-6)

def test_decoder_starts_as_sphere():
  Tensor.manual_seed(0)
  model = SDFSRN(16)   # full width: geometric initialisation is a statement about the real decoder
  point = Tensor.uniform(2, 4000, 3, low=-1, high=1)
  sdf, truth = model.decoder(Tensor.randn(2, 128), point).numpy(), np.linalg.norm(point.numpy(), axis=-1) - 0.5
  assert ((sdf < 0) == (truth < 0)).mean() > 0.8 and np.abs(sdf - truth).mean() < 0.3
  centre, far = model.decoder(Tensor.randn(2, 128), Tensor.zeros(2, 1, 3)).numpy(), sdf[truth > 0.35]
  assert (centre < 0).all() and (far > 0).mean() > 0.95

def test_every_parameter_gets_a_gradient():
  # the decoder's latent columns start at zero (geometric initialisation), so the encoder's gradient is zero on the
  # very first step and flows from the second: every parameter must have moved after two
  model, _, step = tiny_step()
  before = [p.numpy().copy() for p in nn.state.get_parameters(model)]
  for _ in range(2):
    step(*first_batch())
  for p, old in zip(nn.state.get_parameters(model), before):
    assert np.abs(p.numpy() - old).max() > 0, p.shape

# *** 3-D evaluation ***

def test_sphere_mesh_is_closed_outward_and_has_the_radius():
  vertices, faces = render.surface_nets(np.linalg.norm(evaluate.grid_points(), axis=-1) - 0.5)
  np.testing.assert_allclose(np.linalg.norm(vertices, axis=-1), 0.5, atol=0.005)
  directed = {tuple(e) for e in np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])}
  # every edge in two faces, opposite ways
  assert len(directed) == 3 * len(faces) and all((b, a) in directed for a, b in directed)
  v0, v1, v2 = (vertices[faces[:, i]] for i in range(3))
  # outward
  np.testing.assert_allclose(np.einsum("ij,ij->", v0, np.cross(v1, v2)) / 6, 4 / 3 * np.pi * 0.5 ** 3, rtol=0.01)

def test_obj_round_trip(tmp_path):
  vertices, faces = render.surface_nets(np.linalg.norm(evaluate.grid_points(), axis=-1) - 0.3)
  evaluate.save_obj(str(tmp_path / "s.obj"), vertices, faces)
  lines = open(tmp_path / "s.obj").read().split("\n")
  assert sum(l.startswith("v ") for l in lines) == len(vertices)
  assert sum(l.startswith("f ") for l in lines) == len(faces)

def test_nearest_equals_brute_force():
  rng = np.random.default_rng(0)
  a, b = rng.uniform(-1, 1, (300, 3)), rng.uniform(-1, 1, (700, 3))
  np.testing.assert_allclose(evaluate.nearest(a, b), np.linalg.norm(a[:, None] - b[None], axis=-1).min(1), atol=1e-6)

def test_3d_metrics_of_the_true_shape_beat_the_sphere_baseline():
  data = shapes.make_dataset(3, 16, 0)
  truth = np.stack([shapes.shape_sdf(s, evaluate.grid_points()) for s in data["shapes"][1:2]])           # the box
  predicted, baseline, _ = evaluate.evaluate_3d(truth, data["shapes"][1:2], 0)
  assert predicted["volume_iou"] == 1 and predicted["chamfer_l1"] < 0.01 and predicted["fscore_0.02"] > 0.95
  assert baseline["volume_iou"] < 0.95 and baseline["chamfer_l1"] > predicted["chamfer_l1"]

class Steep:
  """A stand-in for the model: the SDF of an off-centre sphere times slope. A learned SDF is no exact distance: its
  values change up to about twice as fast (1.9 at most on trained checkpoints), which predicted_grids' MARGIN allows
  for."""
  def __init__(self, slope:float): self.slope = slope
  def sdf(self, latent:Tensor, point:Tensor) -> Tensor:
    return (((point - Tensor([0.3, -0.1, 0.05])) ** 2).sum(-1).sqrt() - 0.4) * self.slope   # [B,...]

def test_coarse_to_fine_grid_equals_the_whole_grid():
  exact = 1.5 * (np.linalg.norm(evaluate.grid_points() - np.array([0.3, -0.1, 0.05]), axis=-1) - 0.4)   # [G,G,G]
  grid = evaluate.predicted_grids(Steep(1.5), np.zeros((1, 8), np.float32))[0]
  assert ((grid < 0) == (exact < 0)).all()                                     # the volume, cell by cell
  near = np.abs(exact) < 1.5 * np.sqrt(3) * 2 / evaluate.GRID                  # within a cell's diagonal of the surface
  np.testing.assert_allclose(grid[near], exact[near], atol=1e-5)               # so the mesh's cells, in place
  assert (grid != exact).mean() > 0.5                                          # and most cells were never evaluated

def test_pixels_off_the_disc_are_background():
  model, data = tiny_model(), shapes.make_dataset(2, 16, 0)
  latent = model.encoder(Tensor(data["images"])).numpy()                                             # [S,L]
  origin, direction = shapes.view_rays(data["novel_poses"][:, :2], 16)                               # [4,3] [4,P,3]
  full = model.sdf(Tensor(latent.repeat(2, 0)),
                   render.sample_points(Tensor(origin).unsqueeze(1), Tensor(direction), 6)).min(-1).numpy()
  rendered = evaluate.render_views(model, latent.repeat(2, 0), data["novel_poses"][:, :2], 16, 6)   # [4,P]
  meets = render.meets_bound(origin, direction)                                                      # [4,P]
  np.testing.assert_allclose(rendered[:, meets.any(0)], full[:, meets.any(0)], atol=1e-6)
  assert (~meets.any(0)).sum() > 0 and (rendered[:, ~meets.any(0)] == np.inf).all()
  # the unit sphere subtends 23.6 degrees from 2.5 away: the corner pixel's ray (31.7 degrees off axis) misses, the
  # centre's meets
  assert not meets[:, 0].any() and meets[:, 8 * 16 + 8].all()

# *** train ***

def tiny_step(samples=8, views=1, **flags):
  data = shapes.make_dataset(3, 16, 0, views=views)
  model = tiny_model()
  opt = nn.optim.Adam(nn.state.get_parameters(model), lr=3e-3)
  return model, opt, train.make_step(model, opt, train.device_data(data, flags.get("supervise_3d", False)),
                                     samples, **flags)

def first_batch(pick=None, T=0.05, lr=3e-3) -> tuple:   # shapes, rows, picks, temperature, learning rate
  return (np.arange(3, dtype=np.int32), np.arange(3, dtype=np.int32),
          np.zeros((3, 16), np.int32) if pick is None else pick, T, lr)

def test_to_blocks_groups_pixels_of_a_block():
  x = np.arange(64).reshape(1, 8, 8)
  assert train.to_blocks(x, 8)[0, 1].tolist() == [4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31]

def test_schedules():
  # temperature falls from T_START to T_END over the first third and stays; the learning rate holds over the first
  # third, then falls monotonically towards 0
  T = [train.temperature(e, 300) for e in range(300)]
  lr = [train.learning_rate(e, 300) for e in range(300)]
  assert T[0] == train.T_START and np.isclose(T[100], train.T_END) and T[299] == T[100] and all(np.diff(T[:101]) < 0)
  assert lr[0] == lr[100] == train.LR and all(np.diff(lr[100:]) < 0) and lr[-1] < 1e-3 * train.LR

def test_every_parameter_gets_a_gradient_with_all_flags():
  model, _, step = tiny_step(views=2, shading=1.0)
  model.symmetric = True
  before = [p.numpy().copy() for p in nn.state.get_parameters(model)]
  for _ in range(3):
    step(*first_batch())
  for p, old in zip(nn.state.get_parameters(model), before):
    assert np.abs(p.numpy() - old).max() > 0, p.shape

def test_3d_supervised_step_lowers_loss():
  _, _, step = tiny_step(supervise_3d=True)
  losses = [step(*first_batch()) for _ in range(12)]
  assert np.mean(losses[-3:]) < losses[0]

def test_jitted_step_lowers_loss():
  _, _, step = tiny_step()
  rng = np.random.default_rng(0)
  # replay from call 3
  losses = [step(*first_batch(rng.integers(0, 16, (3, 16), dtype=np.int32))) for _ in range(12)]
  assert np.mean(losses[-3:]) < losses[0]

def test_replayed_step_equals_eager_steps():
  # the jitted Adam update reads the gradients where the gradient's replays write them: 5 steps (replays from the 3rd)
  # on changing batches, temperatures and learning rates, written into the same buffers each step (fast.write), must
  # move the parameters as 5 steps without the jit do; the last, at learning rate 0, must not move them
  rng, params = np.random.default_rng(0), []
  batches = [first_batch(rng.integers(0, 16, (3, 16), dtype=np.int32), 0.05 - 0.01 * i, 3e-3 / (i + 1))
             for i in range(4)]
  for jit in (1, 0):
    model, _, step = tiny_step()
    with Context(JIT=jit):
      for batch in batches:
        step(*batch)
      before = [p.numpy() for p in nn.state.get_parameters(model)]
      step(*first_batch(lr=0.0))
    params.append([p.numpy() for p in nn.state.get_parameters(model)])
    for a, b in zip(before, params[-1]):
      np.testing.assert_array_equal(a, b)
  for a, b in zip(*params):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)

def test_checkpoint_round_trip(tmp_path):
  model, opt, step = tiny_step()
  step(*first_batch())
  path = str(tmp_path / "model.safetensors")
  sdfsrn.save_checkpoint(path, model, opt, 7, dict(a=1), [0.5])
  fresh = tiny_model(seed=1)
  fresh_opt = nn.optim.Adam(nn.state.get_parameters(fresh), lr=3e-3)
  assert sdfsrn.load_checkpoint(path, fresh, fresh_opt) == (7, dict(a=1), [0.5])
  for a, b in zip(nn.state.get_parameters(model) + opt.m + opt.v,
                  nn.state.get_parameters(fresh) + fresh_opt.m + fresh_opt.v):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert not os.path.exists(path + ".tmp")

def run_train(*flags, cwd=ROOT):
  return subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *flags], capture_output=True, text=True,
                        cwd=cwd, timeout=600)

def test_help():
  out = run_train("--help")
  flags = ("--epochs", "--shapes", "--res", "--samples", "--seed", "--rotate", "--out", "--resume", "--eval", "--image",
           "--views", "--symmetric", "--shading", "--supervise-3d", "--pose", "--workers")
  assert out.returncode == 0 and all(f in out.stdout for f in flags)

TINY = ["--shapes", "3", "--res", "16", "--samples", "6"]

@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory) -> tuple:
  """Two tiny runs of 4 epochs side by side (each compiles on one core much of the time): train.py's default on the CPU
  (2 processes), the straight run that test_interrupt_then_resume_equals_straight_run interrupts, and --workers 1."""
  outs = [tmp_path_factory.mktemp("tiny"), tmp_path_factory.mktemp("one")]
  started = []
  for out, flags in zip(outs, ([], ["--workers", "1"])):
    with open(out / "stderr.txt", "w") as stderr:   # a file: a pipe nobody reads would stall the run
      started.append(subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), "--epochs", "4", *TINY, *flags,
                                       "--out", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr))
  for process, out in zip(started, outs):
    assert process.wait(timeout=600) == 0, open(out / "stderr.txt").read()[-2000:]
  return outs

@pytest.fixture(scope="module")
def tiny_run(tiny_runs):
  return tiny_runs[0]

def test_tiny_end_to_end_run(tiny_run):
  metrics = json.load(open(tiny_run / "metrics.json"))
  for k in ("train_mse", "train_iou", "novel_iou", "epochs", "wall_seconds", "device", "novel_iou_box",
            "held_out_novel_iou", "volume_iou", "chamfer_l1", "fscore_0.02", "fscore_0.05",
            "sphere_baseline_volume_iou"):
    assert k in metrics
  assert metrics["epochs"] == 4 and 0 <= metrics["train_iou"] <= 1 and len(metrics["loss_history"]) == 4
  for f in ("model.safetensors", "triptych_0004.png", "novel_views.png", "turntable.gif", "loss_curve.png"):
    assert (tiny_run / f).stat().st_size > 0
  assert Image.open(tiny_run / "turntable.gif").n_frames == figures.TURNTABLE_FRAMES

def test_eval_reproduces_metrics(tiny_run):
  evaluated = run_train("--eval", str(tiny_run / "model.safetensors"))
  assert evaluated.returncode == 0, evaluated.stderr[-2000:]
  # the held-out shapes: scored by the training run's helper, and here by --eval's second process
  evaluated, trained = json.loads(evaluated.stdout.strip().splitlines()[-1]), json.load(open(tiny_run / "metrics.json"))
  for k in ("train_iou", "held_out_novel_iou", "held_out_volume_iou"):
    assert evaluated[k] == pytest.approx(trained[k])

def test_reconstruct_user_image(tiny_run, tmp_path):
  Image.new("L", (100, 70), 128).save(tmp_path / "photo.png")   # another size and mode
  out = run_train("--eval", str(tiny_run / "model.safetensors"), "--image", str(tmp_path / "photo.png"),
                  "--out", str(tmp_path / "rec"))
  assert out.returncode == 0, out.stderr[-2000:]
  assert Image.open(tmp_path / "rec" / "photo_views.png").size[0] > 0
  (tmp_path / "notes.png").write_text("not an image")
  bad = run_train("--eval", str(tiny_run / "model.safetensors"), "--image", str(tmp_path / "notes.png"),
                  "--out", str(tmp_path / "rec2"))
  assert bad.returncode != 0 and "Traceback" not in bad.stderr
  assert "not" in bad.stderr.splitlines()[-1] and not (tmp_path / "rec2").exists()

@pytest.mark.parametrize("flags", [["--epochs", "-1"], ["--shapes", "0"], ["--res", "20"], ["--samples", "x"],
                                   ["--bogus"], ["--eval", "missing.safetensors"], ["--eval", "junk.safetensors"],
                                   ["--symmetric", "--rotate"], ["--image-pose", "30", "10"],
                                   ["--eval", "m.safetensors", "--image", "p.png", "--image-pose", "0", "90"]])
def test_bad_input_is_one_clear_line(flags, tmp_path):
  (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint at all")
  out = run_train(*flags, "--out", str(tmp_path / "out"), cwd=tmp_path)
  assert out.returncode != 0 and "Traceback" not in out.stderr and "error:" in out.stderr.strip().splitlines()[-1]
  assert sum("error" in line for line in out.stderr.splitlines()) == 1 and not (tmp_path / "out").exists()

# *** robustness: determinism, interrupt and resume, numeric failure ***

def history(out_dir) -> list[float]: return json.load(open(os.path.join(out_dir, "metrics.json")))["loss_history"]

def test_interrupt_then_resume_equals_straight_run(tiny_run, tmp_path):
  straight, broken = str(tiny_run), str(tmp_path / "broken")
  proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), "--epochs", "4", *TINY, "--out", broken],
                          stderr=subprocess.PIPE, text=True, cwd=ROOT)
  seen = ""
  while "1/4" not in seen:
    seen += proc.stderr.read(1)   # the progress bar reached epoch 1: interrupt during epoch 2
  proc.send_signal(signal.SIGINT)
  err = seen + proc.stderr.read()
  assert proc.wait() != 0 and "--resume" in err and "Traceback" not in err
  saved = json.loads(
    nn.state.safe_load_metadata(os.path.join(broken, "model.safetensors"))[2]["__metadata__"]["history"])
  # whole epochs; same seed, same curve (determinism)
  assert 1 <= len(saved) < 4 and saved == history(straight)[:len(saved)]
  resumed = run_train("--epochs", "4", *TINY, "--out", broken, "--resume")
  assert resumed.returncode == 0 and "resuming" in resumed.stdout, resumed.stderr[-2000:]
  np.testing.assert_allclose(history(broken), history(straight), rtol=1e-6)
  for k in ("train_mse", "train_iou", "novel_iou"):
    resumed_metrics, straight_metrics = (json.load(open(os.path.join(d, "metrics.json"))) for d in (broken, straight))
    assert resumed_metrics[k] == pytest.approx(straight_metrics[k], rel=1e-5)

def test_two_workers_train_as_one(tiny_runs):
  # train.py's default on the CPU: 2 processes, each the gradient of part of every batch (2 + 1 of 3 shapes, weighted
  # by their share), summed; one process must train the same model, up to float rounding
  two, one = (json.load(open(os.path.join(d, "metrics.json"))) for d in tiny_runs)
  assert (two["workers"], one["workers"]) == (2, 1)
  np.testing.assert_allclose(two["loss_history"], one["loss_history"], rtol=1e-5)
  for k in ("train_mse", "novel_iou", "volume_iou", "held_out_novel_iou"):
    assert two[k] == pytest.approx(one[k], rel=1e-4, abs=1e-6)
  (epoch_two, iou_two), = two["checkpoint_novel_iou"]   # measured by the helper with two processes, here with one
  (epoch_one, iou_one), = one["checkpoint_novel_iou"]
  assert epoch_two == epoch_one == 4 and iou_two == pytest.approx(iou_one, rel=1e-4, abs=1e-6)

@pytest.mark.parametrize("flags", [dict(symmetric=True, shading=1.0, views=2, pose="view"), dict(supervise_3d=True)])
def test_three_workers_step_as_one_process_with_every_flag(flags, tmp_path):
  # the batch of 3 split over 3 processes (1 row each, weighted 1/3): the same losses and parameters as one process
  args = argparse.Namespace(shapes=3, res=16, samples=6, seed=0, rotate=False, views=1, symmetric=False, shading=0.0,
                            supervise_3d=False, pose=None, resume=False, out=str(tmp_path))
  vars(args).update(flags)
  results = []
  for count in (1, 3):
    run, step, call = workers.start(train.setup, args, count)
    losses = []
    for epoch in range(2):
      for batch in train.batches(np.random.default_rng([0, epoch]), 3, args.views, 16):
        losses.append(step(*batch, 0.05, 3e-3))
    results.append((losses, [p.numpy() for p in nn.state.get_parameters(run.model)],
                    call(evaluate.checkpoint_iou, 6)()))
  (one, one_params, one_iou), (three, three_params, three_iou) = results
  np.testing.assert_allclose(three, one, rtol=1e-5)
  for a, b in zip(three_params, one_params):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  assert three_iou == pytest.approx(one_iou, abs=1e-3)   # measured in a helper, and here

def test_nan_loss_stops_and_keeps_checkpoint(tiny_run, tmp_path):
  path = str(tmp_path / "model.safetensors")
  saved = str(tiny_run / "model.safetensors")
  state, meta = nn.state.safe_load(saved), nn.state.safe_load_metadata(saved)[2]["__metadata__"]
  state = {k: v.to("CPU").realize() for k, v in state.items()}
  state["model.decoder.layers.4.bias"] = Tensor([float("nan")])   # poison, and pretend epoch 4 is left
  nn.state.safe_save(state, path, metadata=meta | dict(epoch="3"))
  before = open(path, "rb").read()
  out = run_train("--epochs", "4", *TINY, "--out", str(tmp_path), "--resume")
  assert out.returncode != 0 and "nan" in out.stderr.splitlines()[-1]
  assert "epoch 4" in out.stderr and "Traceback" not in out.stderr
  assert open(path, "rb").read() == before

def one_clear_line(out) -> bool:
  return (out.returncode != 0 and "Traceback" not in out.stderr
          and out.stderr.strip().splitlines()[-1].startswith("error:"))

def test_unknown_device_and_unwritable_output(tmp_path):
  assert one_clear_line(subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--out", str(tmp_path / "o")],
                                       capture_output=True, text=True, env=os.environ | dict(DEV="NOSUCHDEVICE")))
  (tmp_path / "file").write_text("")
  assert one_clear_line(run_train("--epochs", "1", *TINY, "--out", str(tmp_path / "file" / "out")))

def test_resume_refuses_truncated_and_foreign_checkpoints(tiny_run, tmp_path):
  whole = open(tiny_run / "model.safetensors", "rb").read()
  (tmp_path / "model.safetensors").write_bytes(whole[:len(whole) // 2])   # killed mid-copy
  assert one_clear_line(run_train("--epochs", "4", *TINY, "--out", str(tmp_path), "--resume"))
  (tmp_path / "model.safetensors").write_bytes(whole)                     # another configuration
  assert one_clear_line(run_train("--epochs", "4", "--shapes", "6", "--res", "16", "--samples", "6",
                                  "--out", str(tmp_path), "--resume"))
  assert open(tmp_path / "model.safetensors", "rb").read() == whole       # overwrote nothing

# *** figures ***

def test_figures_overlay_colours():
  pred, truth = np.array([1.0, 1.0, 0.0, 0.0]), np.array([1.0, 0.0, 1.0, 0.0])
  # white, red, blue, black
  np.testing.assert_array_equal(figures.overlay(pred, truth), [[1, 1, 1], [1, 0, 0], [0, 0, 1], [0, 0, 0]])

def test_figures_plot_maps_values_to_pixel_rows():
  np.testing.assert_allclose(figures.to_pixel([0.01, 10 ** -1.5, 0.1, 1], 0.01, 1, 300, 100, log=True),
                             [300, 250, 200, 100])   # a decade each 100
  np.testing.assert_allclose(figures.to_pixel([0, 0.25, 1], 0, 1, 300, 100), [300, 250, 100])

def test_figures_loss_is_drawn_at_its_row(tmp_path):
  figures.loss_curve([0.3] * 10, dict(checkpoint_novel_iou=[(5, 0.5)]), str(tmp_path / "loss.png"), size=(400, 300),
                     margin=(50, 50, 50, 50))
  image = np.asarray(Image.open(tmp_path / "loss.png").convert("RGB"))
  row = figures.to_pixel(0.3, 0.1, 1, 250, 50, log=True)   # the axis spans the decade 0.1 .. 1
  column = [tuple(p) for p in image[:, int(figures.to_pixel(7, 0, 10, 50, 350))]]   # epoch 7: only the loss there
  # 2 pixels wide
  assert [r for r, p in enumerate(column) if p == figures.LOSS_COLOUR] == pytest.approx([row - 0.5, row + 0.5], abs=1)
  assert tuple(image[int(figures.to_pixel(0.5, 0, 1, 250, 50)),
                     int(figures.to_pixel(5, 0, 10, 50, 350))]) == figures.IOU_COLOUR

def test_figures_novel_views_put_the_worst_first_and_skip_the_middle(tmp_path):
  data = shapes.make_dataset(14, 16, 0)
  # [S,V,P] perfect ...
  novel_sdf = np.where(data["novel_silhouettes"] > 0, -1.0, 1.0).reshape(14, shapes.NOVEL_VIEWS, -1)
  novel_sdf[5] = 1.0                                                 # ... but shape 5 misses all
  per_shape = [0.0 if s == 5 else 1.0 for s in range(14)]
  figures.novel_grid(data, novel_sdf, per_shape, str(tmp_path / "novel.png"))
  image, cell = (np.asarray(Image.open(tmp_path / "novel.png").convert("RGB")),
                 16 * (figures.TILE // 16) + figures.GUTTER)
  top = 4 * figures.LINE                                             # two title lines, two label lines
  assert image.shape[0] == top + 13 * cell                           # worst 8, a gap, best 4
  first = image[top:top + cell - figures.GUTTER,
                figures.NAMES + cell:figures.NAMES + 2 * cell - figures.GUTTER].reshape(-1, 3)
  assert {tuple(p) for p in first} == {(0, 0, 255), (0, 0, 0)}       # first row, first novel view: all missed

def test_figures_gif_has_a_frame_per_step(tmp_path):
  spin = np.random.default_rng(0).uniform(size=(figures.TURNTABLE_FRAMES, 16, 16, 3)).astype(np.float32)   # [T,H,W,3]
  figures.save_gif([spin, spin], ["a\ntruth", "\nmodel"], str(tmp_path / "spin.gif"))
  gif, cell = Image.open(tmp_path / "spin.gif"), figures.TILE + figures.GUTTER
  assert gif.n_frames == figures.TURNTABLE_FRAMES
  assert gif.size == (2 * cell, 2 * figures.LINE + cell)   # two columns under two-line labels

def test_figures_checkpoints_measure_novel_iou(tiny_run):
  checks = json.load(open(tiny_run / "metrics.json"))["checkpoint_novel_iou"]
  assert len(checks) == 1 and checks[0][0] == 4 and 0 <= checks[0][1] <= 1   # the run's only checkpoint: epoch 4
