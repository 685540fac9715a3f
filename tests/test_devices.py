# Tests for how Mini SDF-SRN starts and stops: every kernel compiled for CUDA (nvcc on tinygrad's NULL device), no
# float64 anywhere Metal would meet it, one `error:` line for each device that cannot start and for each bad input,
# with nothing lost. Tiny sizes, so the file runs in about two minutes on 2 cores.
import argparse, ctypes, json, os, shutil, signal, subprocess, sys, time
import numpy as np
import pytest
from PIL import Image, ImageDraw
from tinygrad import nn
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import evaluate, figures, shapes, train
from sdfsrn import SDFSRN, save_checkpoint

TINY = ["--shapes", "3", "--res", "16", "--samples", "6"]

def environ(**changes) -> dict:
  """This process's environment without DEV (the suite runs under DEV=CPU), with changes."""
  return {k: v for k, v in os.environ.items() if k != "DEV"} | changes

def run_train(*flags, env=None) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *flags], capture_output=True, text=True,
                        cwd=ROOT, timeout=600, env=env or os.environ)

def start_train(*flags) -> subprocess.Popen:
  # SIGINT back to its default in the child: a shell starts background jobs (`pytest ... &`) with it ignored, and Python
  # then installs no KeyboardInterrupt handler, so the Ctrl-C tests would fail for how the suite was started
  return subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *flags], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, cwd=ROOT,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

def read_until(stream, text:str) -> str:
  seen = ""
  while text not in seen and (line := stream.readline()):
    seen += line
  return seen

def one_clear_line(out, *words:str) -> bool:
  """Failed, and said why in one `error:` line, the last, holding every word; no traceback."""
  lines = out.stderr.strip().splitlines()
  return (out.returncode != 0 and "Traceback" not in out.stderr and bool(lines) and lines[-1].startswith("error:")
          and sum("error" in line for line in lines) == 1 and all(w in lines[-1] for w in words))

def loads(call) -> bool:
  """Whether tinygrad finds the library behind call (it raises AttributeError on the first call where it does not)."""
  try:
    call()
  except AttributeError:
    return False
  return True

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
  """An untrained checkpoint of a tiny run (--epochs 2), as if its first epoch were done: enough to evaluate, resume
  and read images with."""
  path = str(tmp_path_factory.mktemp("checkpoint") / "model.safetensors")
  model = SDFSRN(16)
  config = dict(shapes=3, res=16, samples=6, seed=0, epochs=2, rotate=False, views=1, symmetric=False, shading=0.0,
                supervise_3d=False, pose=None)
  save_checkpoint(path, model, nn.optim.Adam(nn.state.get_parameters(model)), 1, config, [0.5])
  return path

# *** devices: every kernel compiles for CUDA, and none touches float64 (Metal has none) ***

SPY = """
import atexit, json, runpy, sys
from tinygrad import Tensor, Device, dtypes
found, schedule = set(), Tensor.linear_with_vars
def spy(self, *lst):
  linear, var_vals = schedule(self, *lst)   # every kernel is scheduled here once: a TinyJit's first call runs eagerly
  found.update(f"{call.src[0].op.name} with float64 buffers "
               f"{[b.shape for b in call.src[1:] if b.dtype == dtypes.float64]}"
               for call in linear.src if any(u.dtype == dtypes.float64 for u in call.toposort()))
  return linear, var_vals
Tensor.linear_with_vars = spy
atexit.register(lambda: print(json.dumps(dict(float64=sorted(found), devices=sorted(Device._opened_devices)))))
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path("train.py", run_name="__main__")
"""
NVCC = shutil.which("nvcc")

@pytest.fixture(scope="module")
def spied_run(tmp_path_factory) -> subprocess.CompletedProcess:
  """A tiny train.py run (the step, the evaluation, the figures with the shaded render) that lists every kernel touching
  float64. Where nvcc is installed it runs on tinygrad's NULL device with the CUDA renderer: every kernel is compiled by
  nvcc for an sm_89 GPU and never run, reads return zeros. tinygrad's defaults otherwise, so float32 matrix products
  compile to TF32 tensor-core kernels as on a real sm_89 (TC=0 would leave those out); at most 31 buffers a kernel, as
  on Metal. Elsewhere it runs on the CPU."""
  env = dict(DEV="NULL:NVCC:sm_89", NULL_ALLOW_COPYOUT="1", MAX_KERNEL_BUFFERS="31") if NVCC else dict(DEV="CPU")
  out = str(tmp_path_factory.mktemp("spied"))
  return subprocess.run([sys.executable, "-c", SPY, "--epochs", "1", *TINY, "--out", out], capture_output=True,
                        text=True, cwd=ROOT, timeout=600, env=environ(**env))

@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed: the CUDA compile check needs it (the CUDA toolkit)")
def test_every_kernel_compiles_for_cuda(spied_run):
  assert spied_run.returncode == 0, spied_run.stderr[-3000:]
  assert spied_run.stdout.startswith("device NULL") and "turntable.gif" in spied_run.stdout
  # nor does a GPU run open the CPU device, which compiles its helpers with clang (a GPU machine may have none):
  # tinygrad's safe_save copied through it, so the first checkpoint of a DEV=CUDA run without clang crashed (seen on an
  # H200)
  assert "CPU" not in json.loads(spied_run.stdout.strip().splitlines()[-1])["devices"]

def test_no_kernel_touches_float64(spied_run):
  assert spied_run.returncode == 0, spied_run.stderr[-3000:]
  assert json.loads(spied_run.stdout.strip().splitlines()[-1])["float64"] == []

def test_the_spy_sees_float64():
  # the spy above must be able to fail: a numpy float64 array passed without a dtype is the usual way one creeps in
  code = SPY.split("sys.argv")[0] + ("import numpy as np\n"
                                      "(Tensor(np.ones(3, np.float32)) * Tensor(np.zeros(3))).numpy()\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
  # the copy in and the product
  assert out.returncode == 0 and len(json.loads(out.stdout.strip().splitlines()[-1])["float64"]) >= 2

# *** devices that cannot start: one line that says what to do ***

@pytest.mark.skipif(sys.platform == "darwin", reason="Metal starts on a Mac")
def test_metal_off_a_mac(tmp_path):
  out = run_train("--epochs", "1", *TINY, "--out", str(tmp_path / "out"), env=environ(METAL="1"))
  assert one_clear_line(out, "Metal", "macOS", "METAL=1") and not (tmp_path / "out").exists()

@pytest.mark.skipif(loads(lambda: __import__("tinygrad.runtime.autogen.cuda", fromlist=["cuda"]).cuInit(0))
                    or os.path.exists("/dev/nvidiactl"), reason="this machine has an NVIDIA driver")
@pytest.mark.parametrize("spelling", [dict(CUDA="1"), dict(DEV="NV")])
def test_nvidia_without_a_driver(spelling, tmp_path):
  out = run_train("--epochs", "1", *TINY, "--out", str(tmp_path / "out"), env=environ(**spelling))
  assert one_clear_line(out, "found no NVIDIA GPU and driver", "install the driver") and not (tmp_path / "out").exists()

@pytest.mark.skipif(loads(lambda: __import__("tinygrad.runtime.autogen.nvrtc", fromlist=["nvrtc"]).nvrtcVersion(
  ctypes.byref(ctypes.c_int()), ctypes.byref(ctypes.c_int()))), reason="NVRTC is installed here")
def test_cuda_c_without_nvrtc_suggests_ptx(tmp_path):
  # DEV=CUDA falls back to tinygrad's PTX renderer by itself; asking for CUDA C is what fails without NVRTC
  out = run_train("--epochs", "1", *TINY, "--out", str(tmp_path / "out"), env=environ(DEV="NULL:CUDA:sm_89"))
  assert one_clear_line(out, "NVRTC", "DEV=CUDA:PTX") and not (tmp_path / "out").exists()

def test_cpu_without_clang(tmp_path):
  # the CPU device compiles even its own helpers with clang; tinygrad's compile cache must not hide that clang is gone
  no_clang = dict(PATH=str(tmp_path))
  # would be the default
  gpu = sys.platform == "darwin" or any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/kfd", "/dev/dri"))
  # the CPU named, and picked as the default
  for env in [environ(DEV="CPU", **no_clang)] + ([] if gpu else [environ(**no_clang)]):
    out = run_train("--epochs", "1", *TINY, "--out", str(tmp_path / "out"), env=env)
    assert one_clear_line(out, "clang", "apt-get install clang") and not (tmp_path / "out").exists()

@pytest.mark.parametrize("dev, words", [("NOSUCH", ["no device NOSUCH", "CPU"]),
                                        ("CLANG", ["no device CLANG", "DEV=CPU"]),
                                        ("LLVM", ["no device LLVM", "DEV=CPU"])])
def test_unknown_and_renamed_devices(dev, words, tmp_path):
  out = run_train("--epochs", "1", *TINY, "--out", str(tmp_path / "out"), env=environ(DEV=dev))
  assert one_clear_line(out, *words) and "DEV=CLANG" not in out.stderr + out.stdout
  assert "DEV=LLVM" not in out.stderr + out.stdout

def test_bench_says_it_in_one_line_too():
  out = subprocess.run([sys.executable, os.path.join(ROOT, "bench.py")], capture_output=True, text=True, cwd=ROOT,
                       timeout=120, env=environ(DEV="NOSUCH"))
  assert one_clear_line(out, "no device NOSUCH")

def test_old_spellings_name_the_device(tmp_path):
  # tinygrad 0.14 asserts on QCOM=1
  out = run_train("--epochs", "1", *TINY, "--out", str(tmp_path / "out"), env=environ(QCOM="1"))
  assert one_clear_line(out, "cannot start QCOM") and "deprecated" not in out.stderr

# *** bad input: one line, a non-zero exit, nothing lost ***

@pytest.mark.parametrize("flags", [["--seed", "-1"], ["--shading", "nan"], ["--shading", "-1"],
                                   ["--image", "photo.png"], ["--eval", "x.safetensors", "--epochs", "5"]])
def test_bad_values_are_refused(flags, tmp_path):
  out = run_train(*flags, "--out", str(tmp_path / "out"))
  last = out.stderr.strip().splitlines()[-1]
  assert out.returncode != 0 and "Traceback" not in out.stderr and "error:" in last
  assert flags[0] in last and not (tmp_path / "out").exists()

@pytest.mark.parametrize("flag, value", [("--res", "4096"), ("--samples", "1000000"), ("--shapes", "100000000"),
                                         ("--views", "100000")])
def test_what_cannot_fit_in_memory_is_refused_up_front(flag, value, tmp_path):
  out = run_train(*TINY, flag, value, "--out", str(tmp_path / "out"))   # the last of a repeated flag counts
  assert one_clear_line(out, f"{flag} {value}", "GiB of memory") and not (tmp_path / "out").exists()

def test_the_defaults_fit_in_a_gibibyte():
  args = argparse.Namespace(shapes=train.SHAPES, res=train.RES, samples=train.SAMPLES, views=1)
  assert 0.1 < sum(train.memory_needed(args).values()) < 1

def test_empty_surfaces_write_null_not_nan():
  data = shapes.make_dataset(3, 16, 0)
  # SDF > 0 everywhere
  predicted = evaluate.evaluate_3d(np.ones((3, evaluate.GRID, evaluate.GRID, evaluate.GRID), np.float32),
                                   data["shapes"], 0)[0]
  assert predicted["chamfer_l1"] is None and predicted["volume_iou"] == 0
  json.dumps(predicted, allow_nan=False)   # raises on NaN or Infinity, which most JSON readers reject

def test_second_run_into_the_same_out_is_refused(tmp_path):
  first = start_train("--epochs", "1", *TINY, "--out", str(tmp_path))
  try:
    assert "device" in read_until(first.stdout, "device")                                        # it holds the folder
    second = run_train("--epochs", "1", *TINY, "--out", str(tmp_path))
    assert one_clear_line(second, "another run", f"pid {first.pid}", str(tmp_path))
  finally:
    first.kill()
    first.wait()

def helpers_of(pid:int) -> list[int]:
  """The --workers helper processes of a process (Linux /proc)."""
  found = []
  for child in (p for p in os.listdir("/proc") if p.isdigit()):
    try:
      stat, cmdline = open(f"/proc/{child}/stat").read(), open(f"/proc/{child}/cmdline").read()
    except OSError:   # ended meanwhile
      continue
    if int(stat.rsplit(")", 1)[1].split()[1]) == pid and "spawn_main" in cmdline:
      found.append(int(child))
  return found

def alive(pid:int) -> bool:
  """Running: in the process table and not a zombie waiting for its parent (a container's init may never reap it)."""
  try:
    return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
  except OSError:
    return False

@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads the process table from /proc")
def test_helpers_end_with_a_main_process_killed_hard(tmp_path):
  run = start_train("--epochs", "2", *TINY, "--out", str(tmp_path), "--workers", "3")
  read_until(run.stdout, "compiling")                                   # the helpers are up, setting up or compiling
  helpers = helpers_of(run.pid)
  assert len(helpers) == 2
  run.kill()                                                             # SIGKILL: no atexit, no handler
  run.wait()
  deadline = time.time() + 5
  while time.time() < deadline and any(alive(pid) for pid in helpers):
    time.sleep(0.1)
  assert not any(alive(pid) for pid in helpers)

def test_ctrl_c_during_evaluation_keeps_the_checkpoint(checkpoint):
  # the same handler catches Ctrl-C in a training run's final evaluation, which comes after its last checkpoint
  before = open(checkpoint, "rb").read()
  run = start_train("--eval", checkpoint)
  seen = read_until(run.stdout, "evaluate:")                                                    # loaded, evaluating
  run.send_signal(signal.SIGINT)
  try:
    run.wait(timeout=1.5)                                                                       # it exits in 0.2-0.4 s
  except subprocess.TimeoutExpired:
    # pressed again, as a user would: once in about ten suites the first was lost
    run.send_signal(signal.SIGINT)
  out = subprocess.CompletedProcess(run.args, run.wait(), seen + run.stdout.read(), run.stderr.read())
  assert seen.startswith("device ") and one_clear_line(out, "interrupted", f"{checkpoint} is whole")
  assert open(checkpoint, "rb").read() == before

@pytest.mark.skipif(subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0
                    if shutil.which("unshare") else True,
                    reason="needs unshare -m (Linux, root) to mount a small tmpfs that only this test sees")
def test_full_disk_during_a_save_keeps_the_last_checkpoint(checkpoint, tmp_path):
  # tinygrad's safe_save writes through a memory map: on a full disk that was a SIGBUS, no message and a .tmp left
  # behind; save_checkpoint writes the file itself, so the disk's error is an OSError. A tmpfs in a private mount
  # namespace with room for the old checkpoint and not for a second one; the run resumes at epoch 1 and saves after
  # epoch 2.
  size = os.path.getsize(checkpoint) + 2 ** 19
  script = ('mount -t tmpfs -o size=$1 none "$2" && cp "$3" "$2/" && "$4" train.py --epochs 2 "${@:5}" --out "$2" '
            '--resume; code=$?; '
            'ls -a "$2"; cmp -s "$3" "$2/model.safetensors" && echo whole; exit $code')   # the tmpfs goes with bash
  out = subprocess.run(["unshare", "-m", "bash", "-c", script, "bash", str(size), str(tmp_path), checkpoint,
                        sys.executable, *TINY],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
  assert one_clear_line(out, "No space left on device", "model.safetensors is whole")
  assert "model.safetensors.tmp" not in out.stdout and out.stdout.strip().endswith("whole")

# *** a user's image ***

def test_decompression_bomb_is_one_line(checkpoint, tmp_path):
  Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png")   # 48 KB on disk, 400 M pixels
  out = run_train("--eval", checkpoint, "--image", str(tmp_path / "bomb.png"), "--out", str(tmp_path / "rec"))
  assert one_clear_line(out, "bomb.png", "too large") and out.stdout.startswith("device ")
  assert not (tmp_path / "rec").exists()

def disc(size:int, colour, background, mode="RGB") -> Image.Image:
  image = Image.new(mode, (size, size), background)
  ImageDraw.Draw(image).ellipse([size // 4, size // 4, 3 * size // 4, 3 * size // 4], fill=colour)
  return image

def test_transparency_is_composited_on_black(tmp_path, capsys):
  disc(64, (255, 0, 0, 255), (255, 255, 255, 0), "RGBA").save(tmp_path / "cutout.png")   # white, but fully transparent
  pixels = figures.read_image(str(tmp_path / "cutout.png"), 16)                          # [3,H,W]
  np.testing.assert_allclose(pixels[:, 0, 0], 0)
  np.testing.assert_allclose(pixels[:, 8, 8], [1, 0, 0])
  assert "transparency" in capsys.readouterr().out

def test_light_background_is_filled_with_black(tmp_path, capsys):
  disc(64, (40, 60, 200), "white").save(tmp_path / "photo.jpg")
  pixels = figures.read_image(str(tmp_path / "photo.jpg"), 16)
  assert pixels[:, [0, 0, -1, -1], [0, -1, 0, -1]].max() < 0.05
  assert np.abs(pixels[:, 8, 8] - np.array([40, 60, 200]) / 255).max() < 0.05
  assert "light background" in capsys.readouterr().out
  disc(64, (40, 60, 200), "black").save(tmp_path / "dark.png")   # already as in training: untouched
  np.testing.assert_allclose(figures.read_image(str(tmp_path / "dark.png"), 16)[:, 8, 8],
                             np.array([40, 60, 200]) / 255, atol=1e-6)
  assert "light background" not in capsys.readouterr().out

def test_a_wide_photo_of_a_ball_stays_round_and_is_framed_as_in_training(tmp_path):
  # a lit red ball on light grey in a 200x160 JPEG, drawn here at 4x and shrunk, so its edge blends into the background
  big = Image.new("RGB", (800, 640), (200, 200, 205))
  draw = ImageDraw.Draw(big)
  for r in range(160, 0, -8):   # brighter towards the upper left: a lit ball
    shade = int(120 + 100 * (1 - r / 160))
    draw.ellipse([300 - r - (160 - r) // 3, 340 - r - (160 - r) // 3,
                  300 + r - (160 - r) // 3, 340 + r - (160 - r) // 3],
                 fill=(shade + 30, shade // 4, shade // 5))
  big.resize((200, 160), Image.LANCZOS).save(tmp_path / "ball.jpg", quality=90)
  pixels = figures.read_image(str(tmp_path / "ball.jpg"), 64)                                  # [3,H,W]
  rows, columns = np.nonzero(pixels.max(0) > 0.05)
  height, width = rows.max() - rows.min() + 1, columns.max() - columns.min() + 1
  assert abs(height - width) <= 1                                                              # round, not an egg
  assert abs(max(height, width) - figures.FRAME_FILL * 64) <= 2                                 # framed as in training
  assert abs((rows.min() + rows.max()) / 2 - 31.5) <= 1 and abs((columns.min() + columns.max()) / 2 - 31.5) <= 1
  centre = np.array([(rows.min() + rows.max()) / 2, (columns.min() + columns.max()) / 2])
  y, x = np.mgrid[:64, :64]
  outside = np.hypot(y - centre[0], x - centre[1]) > max(height, width) / 2 + 1.5
  assert pixels.max(0)[outside].max() < 0.05                                                   # no pale ring left

def test_16_bit_image_is_not_read_as_white(tmp_path):
  Image.fromarray(np.full((32, 32), 16384, np.uint16)).save(tmp_path / "gray16.png")   # a quarter of full scale
  np.testing.assert_allclose(figures.read_image(str(tmp_path / "gray16.png"), 16), 0.25, atol=0.01)

def truncated(path):
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(path, "PNG")
  path.write_bytes(path.read_bytes()[:6000])                                                    # of about 12 KB

@pytest.mark.parametrize("make", [lambda path: path.mkdir(), lambda path: path.write_text("# not an image"), truncated])
def test_unreadable_image_is_one_line(make, tmp_path):
  make(tmp_path / "photo.png")
  with pytest.raises(SystemExit, match="^error: cannot read"):
    figures.read_image(str(tmp_path / "photo.png"), 16)
