# Tests that the documents say what the software does: the README's Results table against the metrics files committed
# beside its figures, and every `python train.py ...` command in the README and docs/ run at a tiny size.
import glob, json, os, re, shlex, subprocess, sys
import pytest
from PIL import Image, ImageDraw
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import cli, train

DOCUMENTS = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
TINY = ["--epochs", "2", "--shapes", "3", "--res", "16", "--samples", "6"]   # after a command's own: the last counts
DEFAULTS = dict(epochs=train.EPOCHS, shapes=train.SHAPES, res=train.RES, samples=train.SAMPLES, seed=train.SEED)
# a Results column: the metrics.json key it shows and the digits it shows it with
COLUMNS = {"novel-view IoU": ("novel_iou", 3), "volumetric IoU": ("volume_iou", 3), "training MSE": ("train_mse", 4),
           "held-out novel-view IoU": ("held_out_novel_iou", 3), "held-out volumetric IoU": ("held_out_volume_iou", 3)}

SIZES = ("--epochs", "--shapes", "--res", "--samples", "--seed")   # replaced by TINY, or no more than a seed

def flags_that_matter(command:str) -> str:
  """A command's flags but the sizes and the seed, which the tiny sizes replace or which change no code path."""
  words = shlex.split(command.split("(")[0])
  return " ".join(w for i, w in enumerate(words) if w not in SIZES and (i == 0 or words[i - 1] not in SIZES))

def commands() -> list[str]:
  """Every `python train.py ...` in backticks or a code block of the documents, one for each flags_that_matter."""
  found = {}
  for path in DOCUMENTS:
    for match in re.finditer(r"python train\.py[^`\n|]*", open(path).read()):
      found.setdefault(flags_that_matter(match.group(0)), " ".join(shlex.split(match.group(0).split("(")[0])))
  return sorted(found.values())

def results_rows() -> tuple[list[str], list[list[str]]]:
  """The README's Results table: its header and its rows, cells stripped."""
  text = open(os.path.join(ROOT, "README.md")).read()
  table = text[text.index("## Results"):].split("\n\n|", 1)[1].split("\n\n")[0]
  lines = ("|" + table).strip().splitlines()
  cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
  return cells[0], cells[2:]

def test_results_table_says_what_the_metrics_files_say():
  header, rows = results_rows()
  assert len(rows) >= 3 and all(name in header for name in COLUMNS)
  for row in rows:
    cell = dict(zip(header, row))
    path = re.search(r"\((out/[^)]+/metrics\.json)\)", cell["metrics"]).group(1)
    metrics = json.load(open(os.path.join(ROOT, path)))
    for name, (key, digits) in COLUMNS.items():
      assert cell[name] == f"{metrics[key]:.{digits}f}", (path, name)
    flags = shlex.split(cell["command"].strip("`"))[2:]                      # after `python train.py`
    assert cli.config(cli.parse(DEFAULTS, flags)) == metrics["config"], path   # the run is the command's

def test_the_best_lines_name_commands_of_the_results_table():
  text = open(os.path.join(ROOT, "README.md")).read()
  _, rows = results_rows()
  listed = {row[1].strip("`") for row in rows}
  for what in ("the paper's 50 shapes", "shapes never seen"):
    best = re.search(rf"Best on {what}: `(python train\.py[^`]*)`", text)
    assert best and best.group(1) in listed, what

@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> str:
  path = tmp_path_factory.mktemp("photo") / "photo.jpg"
  image = Image.new("RGB", (120, 90), "white")
  ImageDraw.Draw(image).ellipse([35, 20, 85, 70], fill=(200, 60, 40))
  image.save(path)
  return str(path)

# run by tests/test_sdfsrn.py already (its fixture tiny_runs): the default and one process
COVERED = ("python train.py", "python train.py --workers 1")

TRAINING = [c for c in commands() if "--eval" not in c and flags_that_matter(c) not in COVERED]

@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, tuple[int, str, str]]:
  """Every command of TRAINING run at the tiny size, all at once: much of a tiny run is one process compiling on one
  core, so side by side they keep both cores busy. command -> (exit status, its stderr, its --out folder)."""
  started = {}
  for command in TRAINING:
    out = tmp_path_factory.mktemp("run")
    flags = shlex.split(command)[2:]
    with open(out / "stderr.txt", "w") as stderr:   # a file, not a pipe: a pipe nobody reads would stall the run
      process = subprocess.Popen([sys.executable, "train.py", *flags, *TINY, "--out", str(out)], cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=stderr)
    started[command] = (process, out)
  done = {}
  for command, (process, out) in started.items():
    code = process.wait(timeout=1800)
    done[command] = (code, open(out / "stderr.txt").read(), str(out))
  return done

@pytest.mark.parametrize("command", TRAINING)
def test_every_training_command_in_the_documents_runs(command, trained):
  code, stderr, out = trained[command]
  assert code == 0, stderr[-2000:]
  assert json.load(open(os.path.join(out, "metrics.json")))["epochs"] == 2

def test_every_eval_command_in_the_documents_runs(photo, trained, tmp_path):
  # the checkpoint of a documented command whose encoder and decoder both take the pose, if one is: a photo has none
  pose_aware = [c for c in TRAINING if "--pose view" in c]
  checkpoint = os.path.join(trained[(pose_aware or TRAINING)[0]][2], "model.safetensors")
  evals = [c for c in commands() if "--eval" in c]
  assert evals
  for command in evals:
    flags = shlex.split(command)[2:]
    flags[flags.index("--eval") + 1] = checkpoint
    if "--image" in flags:
      flags[flags.index("--image") + 1] = photo
    if "--out" in flags:
      flags[flags.index("--out") + 1] = str(tmp_path / "rec")
    run = subprocess.run([sys.executable, "train.py", *flags], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert run.returncode == 0, (command, run.stderr[-2000:])
