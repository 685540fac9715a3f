# Starting and stopping Mini SDF-SRN from the command line: the old device spellings, the flags and their checks, the
# memory estimate, the device check, the output folder's lock, and one `error:` line for every way a run cannot go on.
# A leaf: it imports nothing of this project, so every entry point imports it first (train.py, bench.py).
import os
# tinygrad 0.13+ asserts on the old METAL=1 / CUDA=1 / CPU=1 / CLANG=1 spellings that our users type: they become
# DEV=... before tinygrad is imported (CLANG became the CPU device).
for old in ("METAL", "AMD", "NV", "CUDA", "QCOM", "CL", "CPU", "CLANG", "WEBGPU"):
  if os.environ.pop(old, "") == "1":
    os.environ.setdefault("DEV", "CPU" if old == "CLANG" else old)
import argparse, contextlib, fcntl, math, platform, sys
from tinygrad import Context, Device, Tensor
from tinygrad.device import ALL_DEVICES
from tinygrad.helpers import DEV

def fail(message:str):
  sys.exit(f"error: {message}")

def log(message:str):
  print(message, flush=True)

# *** flags ***

TRAINING_FLAGS = ("epochs", "shapes", "res", "samples", "seed", "rotate", "views", "symmetric", "shading",
                  "supervise_3d", "pose")

def parser(defaults:dict) -> argparse.ArgumentParser:
  """train.py's flags; defaults: epochs, shapes, res, samples, seed."""
  p = argparse.ArgumentParser(description="Train Mini SDF-SRN on synthetic shapes from single-view silhouettes.")
  for flag in ("epochs", "shapes", "res", "samples", "seed"):
    p.add_argument(f"--{flag}", type=int, default=defaults[flag])
  p.add_argument("--rotate", action="store_true", help="boxes and ellipsoids in random orientations, not axis-aligned")
  p.add_argument("--views", type=int, default=1, help="K views per shape: the input view plus K-1 random ones, each "
                 "step supervising one at random (beyond the paper: multi-view supervision)")
  p.add_argument("--symmetric", action="store_true",
                 help="query the decoder at (|x|,|y|,|z|): a mirror-symmetry prior (beyond the paper)")
  p.add_argument("--shading", type=float, nargs="?", const=1.0, default=0.0, metavar="WEIGHT",
                 help="add a photometric Lambert term with this weight (default 1; beyond the paper)")
  p.add_argument("--supervise-3d", action="store_true",
                 help="upper bound: fit the decoder to the analytic SDF instead of silhouettes")
  p.add_argument("--pose", nargs="?", const="turn", choices=("turn", "view"), help="tell the model the input "
                 "view's pose: turn, the decoder answers in a frame turned by the view's quarter-turn, so the model "
                 "knows which way the shape is turned; view, also the camera's direction in that frame to the "
                 "encoder (beyond the paper; bare --pose: turn)")
  p.add_argument("--workers", type=int, help="processes that share each batch (default 2 on the CPU, whose tinygrad "
                 "device computes on one core, 1 elsewhere): the same training up to float rounding")
  p.add_argument("--out", default="out", help="where checkpoint, figures and metrics.json go")
  p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
  p.add_argument("--eval", metavar="CKPT", help="evaluate a checkpoint, print its metrics as JSON, train nothing")
  p.add_argument("--image", help="with --eval: reconstruct this image instead; writes its views and mesh to --out")
  p.add_argument("--image-pose", type=float, nargs=2, default=[0.0, 0.0], metavar=("AZIMUTH", "ELEVATION"),
                 help="with --image: the photo's camera in degrees, if known (default 0 0: a --pose model's frame is "
                 "the photo's)")
  return p

def parse(defaults:dict, argv:list[str]|None=None) -> argparse.Namespace:
  """The flags, each checked: a bad one is argparse's one `error:` line."""
  p = parser(defaults)
  args = p.parse_args(argv)
  if args.epochs < 1 or args.shapes < 1 or args.samples < 2 or args.views < 1:
    p.error("--epochs, --shapes, --views must be >= 1 and --samples >= 2")
  if args.res < 16 or args.res % 16:
    p.error("--res must be a multiple of 16 (four stride-2 convolutions and 4x4 ray blocks)")
  if args.symmetric and args.rotate:
    p.error("--symmetric assumes shapes mirror-symmetric about the coordinate planes; "
            "rotated shapes (--rotate) are not")
  if args.pose and args.rotate:
    p.error("--pose turns the frame by quarter-turns about the vertical axis, which maps only axis-aligned shapes "
            "to each other; leave out --rotate")
  if args.seed < 0:
    p.error("--seed must be >= 0 (numpy's generators take no negative seeds)")
  if args.workers is not None and args.workers < 1:
    p.error("--workers must be >= 1")
  if not 0 <= args.shading < math.inf:
    p.error("--shading WEIGHT must be a finite number >= 0")
  if args.image and not args.eval:
    p.error("--image needs --eval CKPT")
  if args.image_pose != p.get_default("image_pose") and not args.image:
    p.error("--image-pose needs --image PHOTO")
  if not (math.isfinite(args.image_pose[0]) and -90 < args.image_pose[1] < 90):
    p.error("--image-pose AZIMUTH ELEVATION: a finite azimuth and an elevation strictly between -90 and 90 degrees")
  if args.eval:
    ignored = [f"--{k.replace('_', '-')}" for k in TRAINING_FLAGS + ("resume",) if getattr(args, k) != p.get_default(k)]
    if ignored:
      p.error(f"--eval takes its settings from the checkpoint and would ignore {' '.join(ignored)}")
  return args

def config(args:argparse.Namespace) -> dict:
  """What a checkpoint must have been trained with to be resumed or evaluated: every training flag."""
  return {k: getattr(args, k) for k in TRAINING_FLAGS}

# *** memory ***

def check_memory(args:argparse.Namespace, need:dict[str, float]):
  """Refuses, before anything starts, sizes whose estimate (need: GiB by part) passes this machine's memory."""
  total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
  if sum(need.values()) > total:
    parts = ", ".join(f"{k} {v:.1f}" for k, v in need.items())
    fail(f"--shapes {args.shapes} --res {args.res} --samples {args.samples} --views {args.views} need about "
         f"{sum(need.values()):.0f} GiB of memory ({parts}), more than the {total:.0f} GiB here: lower them")

# *** devices ***

def device_error(e:Exception) -> str:
  """What to do, for each way tinygrad 0.14 fails to start a device on our users' machines."""
  name = DEV.device or "the default device"
  why = f"{type(e).__name__}: {next(iter(str(e).splitlines()), '')}"
  works_here = "`python -m tinygrad.device` lists the devices that work here"
  if isinstance(e, ModuleNotFoundError) and (e.name or "").startswith("tinygrad.runtime.ops_"):
    renamed = " (clang and LLVM compile for the CPU device now: DEV=CPU)" if name in ("CLANG", "LLVM") else ""
    return f"tinygrad has no device {name}{renamed}; it has {', '.join(ALL_DEVICES)}: {works_here}"
  if "nvrtc" in why.lower():
    return (f"{name} compiles CUDA C with NVRTC, which is missing (the CUDA toolkit or pip's nvidia-cuda-nvrtc has "
            f"it; NVRTC_PATH names the library): install it, or use DEV=CUDA:PTX, which needs only the driver")
  if (isinstance(e, FileNotFoundError) and "clang" in str(e)) or "no usable devices" in str(e):
    return ("tinygrad's CPU device compiles with clang, which is missing: apt-get install clang "
            "(macOS: xcode-select --install)")
  if name == "METAL" and platform.system() != "Darwin":
    return f"Metal runs only on macOS and this is {platform.system()}: leave out METAL=1 / DEV=METAL; {works_here}"
  if name == "NV" and isinstance(e, StopIteration):   # the GPU's compute class is not in tinygrad 0.14's list
    return ("tinygrad 0.14's NV device drives Ampere, Ada and Blackwell GPUs, not this one (Hopper: H100, H200): "
            "use DEV=CUDA")
  if name in ("CUDA", "NV"):
    return (f"{name} found no NVIDIA GPU and driver ({why}): install the driver, or leave out {name}=1 / DEV={name}; "
            f"{works_here}")
  return f"tinygrad cannot start {repr(DEV) or 'the default device'} ({why}); {works_here}"

def check_device():
  """A vectorised kernel compiled with the cache off: no driver, compiler or clang is one line, not a traceback.
  Compiled in this process: tinygrad's compile pool, made at its first compile, would sit idle beside --workers."""
  try:
    with Context(CACHELEVEL=0, PARALLEL=0):
      (Tensor.ones(64).contiguous() + 1).realize()
  except Exception as e:
    fail(device_error(e))

def default_workers(workers:int|None) -> int:
  """--workers: 2 on the CPU, whose tinygrad device computes on one core; 1 elsewhere, where more are refused."""
  if workers is None:
    return 2 if Device.DEFAULT == "CPU" else 1
  if workers > 1 and Device.DEFAULT != "CPU":
    fail(f"--workers above 1 is for the CPU device (processes share its memory), not {Device.DEFAULT}")
  return workers

# *** the output folder and what a failure leaves ***

def lock_out(path:str):
  """Create the output folder and lock it for the life of the process: a second run writing there would mix its
  checkpoints and figures with this one's."""
  try:
    os.makedirs(path, exist_ok=True)
    lock = os.open(os.path.join(path, ".lock"), os.O_RDWR | os.O_CREAT)   # never closed: the lock ends with the process
  except OSError as e:
    fail(f"cannot write to {path}: {e}")
  try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    other = os.read(lock, 20).decode() or "?"
    fail(f"another run (pid {other}) is writing to {path}: wait for it, or pick another --out")
  os.ftruncate(lock, 0)
  os.write(lock, str(os.getpid()).encode())

@contextlib.contextmanager
def one_line_failures(kept):
  """How a started run fails without a bug: Ctrl-C, memory, the disk. One line, and what survived (kept())."""
  try:
    yield
  except KeyboardInterrupt:
    print(file=sys.stderr)   # off the line of a progress bar left open
    fail(f"interrupted; {kept()}")
  except MemoryError as e:
    print(file=sys.stderr)
    fail(f"out of memory ({e}); {kept()}")
  except OSError as e:
    where = f"{e.filename}: " if e.filename else ""
    print(file=sys.stderr)
    fail(f"{where}{e.strerror or e}; {kept()}")
