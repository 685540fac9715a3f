# Data-parallel training on the CPU (train.py --workers N). tinygrad 0.14's CPU device computes on one core, so each
# batch is split over N processes: each computes the loss and gradients of its rows, the main process sums them
# (weighted by each part's share of the batch) through shared memory and hands the sums back, and every process
# applies the same Adam update to its own copy of the model, which so stays identical to the others'. The sums are
# read and written in the CPU device's memory in place. The first helper also runs calls (call): the checkpoints'
# novel-view IoU and half of the evaluation after training. One entry point: start().
import atexit, multiprocessing, os, signal, threading, time
from multiprocessing import shared_memory
from typing import Callable
import numpy as np
from tinygrad import Tensor
from tinygrad.helpers import PARALLEL

def start(setup:Callable, args, count:int) -> tuple:
  """setup(args) in this process and in count-1 helpers started beside it; returns setup's run, the step that shares
  each batch (run.step's signature: shapes, rows, picks, T, lr -> loss) and call(fn, *args), which starts
  fn(model, data, *args) in the first helper (here, with one process) and returns the function that waits for it."""
  if count == 1:
    run = setup(args)
    def call_here(fn:Callable, *fn_args) -> Callable:
      result = fn(run.model, run.data, *fn_args)
      return lambda: result
    return run, run.step, call_here
  helpers = spawn(setup, args, count - 1)   # first: they set up while this process does
  run = setup(args)
  blocks:list[tuple] = []                   # each helper's shared memory, made at the first step
  def step(shape:np.ndarray, row:np.ndarray, pick:np.ndarray, T:float, lr:float) -> float:
    mine, *theirs = np.array_split(np.arange(len(shape)), count)
    for conn, part in zip(helpers, theirs):
      conn.send(("step", shape[part], row[part], pick[part], T, lr, len(part) / len(shape)))
    def exchange(*tensors:Tensor):
      """This process's loss and gradients, and then every helper's, with the sums over all (fixed order: every
      process gets the same bytes)."""
      views = host(tensors)
      for view in views:
        view *= len(mine) / len(shape)
      for conn in helpers[len(blocks):]:
        blocks.append(block(views))
        conn.send(("block", blocks[-1][0].name))
      for conn, (_, parts) in zip(helpers, blocks):
        receive(conn)   # the helper's weighted loss and gradients are in its block
        for view, part in zip(views, parts):
          view += part
      for conn, (_, parts) in zip(helpers, blocks):
        for view, part in zip(views, parts):
          part[:] = view
        conn.send(("summed",))
    return run.step(shape[mine], row[mine], pick[mine], T, lr, exchange=exchange)
  def call(fn:Callable, *fn_args) -> Callable:
    helpers[0].send(("call", fn, *fn_args))
    return lambda: receive(helpers[0])
  return run, step, call

# *** the helpers ***

def spawn(setup:Callable, args, count:int) -> list:
  """Pipes to count helper processes, started fresh (spawn: tinygrad's state is not forked); they end with the main
  process, whose end closes their pipes."""
  # a helper compiles its kernels itself (tinygrad gives a daemon process no compile pool); so does this process:
  # with the helpers on the other cores a compile pool only competes with them
  PARALLEL.value = 0
  # Ctrl-C is the main process's (it finishes the epoch and saves): helpers start with SIGINT ignored, which Python
  # keeps
  handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
  context, pipes = multiprocessing.get_context("spawn"), []
  for _ in range(count):
    mine, theirs = context.Pipe()
    context.Process(target=helper, args=(setup, args, theirs), daemon=True).start()
    pipes.append(mine)
  signal.signal(signal.SIGINT, handler)
  return pipes

def orphaned(parent:int):
  """Ends this helper within a second of its main process, however that ends: a helper busy compiling would notice the
  closed pipe only at its next message, and the shared memory is freed once every process holding it has gone."""
  while os.getppid() == parent:
    time.sleep(0.5)
  os._exit(0)

def helper(setup:Callable, args, conn):
  """A helper process: the step of its rows of every batch, and calls, until the main process closes the pipe."""
  threading.Thread(target=orphaned, args=(os.getppid(),), daemon=True).start()
  try:
    run = setup(args)
  except SystemExit:   # setup refused (a bad checkpoint, say): the main process runs the same setup and says why
    return
  opened:list[tuple] = []   # the main process's block for this helper
  def exchange(*tensors:Tensor):
    views = host(tensors)
    if not opened:
      opened.append(block(views, receive(conn)[1]))
    for view, part in zip(views, opened[0][1]):
      part[:] = view * share
    conn.send(("ready",))
    receive(conn)   # the sums are in the block
    for view, part in zip(views, opened[0][1]):
      view[:] = part
  try:
    while True:
      kind, *message = conn.recv()
      if kind == "step":
        *batch, share = message
        run.step(*batch, exchange=exchange)
      elif kind == "call":
        fn, *fn_args = message
        try:
          conn.send(("result", fn(run.model, run.data, *fn_args)))
        except Exception as e:   # the held-out shapes' evaluation failing, say: the main process raises it
          conn.send(("error", e))
  except (EOFError, OSError):   # the main process has finished, failed or been killed
    pass

def receive(conn) -> tuple:
  """The next message from the other end of a pipe. An ended helper is an OSError and a helper's error is raised here,
  so train.py says it in one line; a result is returned alone."""
  try:
    message = conn.recv()
  except EOFError:
    raise OSError("a --workers helper process ended (its error, if any, is above)") from None
  if message[0] == "error":
    raise message[1]
  return message[1] if message[0] == "result" else message

# *** the sums, in the CPU device's memory ***

def host(tensors:tuple[Tensor, ...]) -> list[np.ndarray]:
  """The CPU device's memory of realised tensors, as numpy arrays that read and write it (no copy). The sums are taken
  element by element, so a buffer's order does not matter, only that it holds that tensor alone."""
  buffers = [t.uop.buffer.ensure_allocated() for t in tensors]
  views = [np.frombuffer(b.as_memoryview(allow_zero_copy=True), np.float32) for b in buffers]
  assert all(len(v) == t.numel() for v, t in zip(views, tensors)), "a gradient shares its buffer"
  return views

def block(views:list[np.ndarray], name:str|None=None) -> tuple[shared_memory.SharedMemory, list[np.ndarray]]:
  """A block of shared memory cut like views: made (and unlinked when this process exits) or, given its name, opened.
  A helper's gradients and their sums pass through it, not through the pipe, which would pickle them."""
  size = sum(len(v) for v in views)
  memory = shared_memory.SharedMemory(name, create=name is None, size=4 * size)
  if name is None:
    atexit.register(memory.unlink)
  parts = np.split(np.ndarray(size, np.float32, memory.buf), np.cumsum([len(v) for v in views])[:-1])
  return memory, parts
