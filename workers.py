# Data-parallel training on the CPU (train.py --workers N). tinygrad 0.14's CPU device computes on one core (it splits
# a kernel into THREAD parts and runs them one after another), so train.py splits each batch over N processes: each
# computes the loss and gradients of its part, the main process sums them (through shared memory) and hands the sum
# back, and every process applies the same Adam update to its own copy of the model, which stays identical to the
# others'. The sums are read and written in the CPU device's memory in place, so this is for the CPU device only. The
# first helper also measures the loss curve's novel-view IoU at each checkpoint and takes half of the evaluation after
# training (call).
import atexit, multiprocessing, os, signal
from multiprocessing import shared_memory
from typing import Callable
import numpy as np
from tinygrad import Tensor
from tinygrad.helpers import PARALLEL
from sdfsrn import load_checkpoint

def parts(batch:int, workers:int) -> list[np.ndarray]:
  """The rows of a batch each process takes, the main process's first."""
  return np.array_split(np.arange(batch), min(workers, batch))

def host(tensors:tuple[Tensor, ...]) -> list[np.ndarray]:
  """The CPU device's memory of realised tensors, as numpy arrays that read and write it (no copy). The sums are taken
  element by element, so a buffer's order does not matter, only that it holds that tensor alone."""
  views = [np.frombuffer(t.uop.buffer.ensure_allocated().as_memoryview(allow_zero_copy=True), np.float32) for t in tensors]
  assert all(len(v) == t.numel() for v, t in zip(views, tensors)), "a gradient shares its buffer"
  return views

def receive(conn):
  """The next object from the other end of a pipe; an ended helper is an OSError, and an error a helper sent (call) is
  raised here, so train.py says it in one line."""
  try: out = conn.recv()
  except EOFError: raise OSError("a --workers helper process ended (its error, if any, is above)") from None
  if isinstance(out, Exception): raise out
  return out

def block(views:list[np.ndarray], name:str|None=None) -> tuple[shared_memory.SharedMemory, list[np.ndarray]]:
  """A block of shared memory and its parts, cut like views: made (and unlinked when this process exits) or, given its
  name, opened. A helper's gradients and their sums pass through it, not through the pipe (a step of 2 processes
  57.4 -> 48.4 ms; README, Benchmark, stop 21)."""
  memory = shared_memory.SharedMemory(name, create=name is None, size=4 * sum(map(len, views)))
  if name is None: atexit.register(memory.unlink)   # the helpers end with this process
  return memory, np.split(np.ndarray(sum(map(len, views)), np.float32, memory.buf), np.cumsum([len(v) for v in views])[:-1])

def sum_from_helpers(helpers:list) -> Callable:
  """The main process's exchange for train.make_step: its loss and gradients plus the helpers', added in one fixed order
  so that every process gets the same bytes."""
  blocks:list[tuple] = []   # each helper's block, made at the first call
  def exchange(*mine:Tensor):
    views = host(mine)
    for conn in helpers[len(blocks):]: blocks.append(block(views)); conn.send(blocks[-1][0].name)
    for conn, (_, parts) in zip(helpers, blocks):
      receive(conn)   # the helper's gradients are in its block
      for view, part in zip(views, parts): view += part
    for conn, (_, parts) in zip(helpers, blocks):
      for view, part in zip(views, parts): part[:] = view
      conn.send(True)
  return exchange

def sum_from_main(conn) -> Callable:
  opened:list[tuple] = []   # the main process's block for this helper, opened at the first call
  def exchange(*mine:Tensor):
    views = host(mine)
    if not opened: opened.append(block(views, receive(conn)))
    for view, part in zip(views, opened[0][1]): part[:] = view
    conn.send(True)
    receive(conn)   # the sums are in the block
    for view, part in zip(views, opened[0][1]): view[:] = part
  return exchange

def shared_step(step:Callable, helpers:list, parts:list[np.ndarray], batch:tuple[np.ndarray, ...], T:float, lr:float) -> float:
  """One training step of the batch (train.batches: shapes, rows, picks) split by parts: each helper is sent its rows,
  the temperature and the learning rate, this process steps on its own rows; the loss of the whole batch."""
  mine, *theirs = parts
  for conn, part in zip(helpers, theirs): conn.send((*(x[part] for x in batch), T, lr))
  return step(*(x[mine] for x in batch), T, lr).item()   # read now: the jit's next call overwrites it

def call(helpers:list, model, data:dict, fn:Callable, *args) -> Callable:
  """fn(model, data, *args) in the first helper while this process goes on (its model is this one's: every update was the
  same), or here and now without one; returns the function that waits for the result."""
  if not helpers: result = fn(model, data, *args); return lambda: result
  helpers[0].send((fn, *args))
  return lambda: receive(helpers[0])

def helper(setup:Callable, args, share:float, conn):
  """A helper process: the step of its part of every batch the main process sends, and any function call, until the main
  process closes the pipe. setup(args, share, exchange) is train.setup: the same dataset, model and step as the main process's."""
  data, model, opt, step = setup(args, share, sum_from_main(conn))
  try:
    if args.resume: load_checkpoint(os.path.join(args.out, "model.safetensors"), model, opt)
  except Exception: return   # the main process reads the same checkpoint and says what is wrong with it
  try:
    while True:
      message = conn.recv()
      if not callable(message[0]): step(*message); continue   # shapes, rows, picks, T, lr
      try: conn.send(message[0](model, data, *message[1:]))
      except Exception as e: conn.send(e)   # e.g. the held-out shapes' evaluation failing: the main process raises it
  except (EOFError, OSError): pass   # the main process has finished, failed or been killed

def spawn(setup:Callable, args, shares:list[float]) -> list:
  """Pipes to one helper process per share, started fresh (spawn: tinygrad's state is not forked); they end with the
  main process."""
  pipes, context = [], multiprocessing.get_context("spawn")
  # helpers compile their kernels themselves (tinygrad gives a daemon process no compile pool); so does this process:
  # with helpers on the other cores a pool only competes (first step of 2 processes 23.7-25.5 s with one, 17.5-17.7 without)
  if shares: PARALLEL.value = 0
  # Ctrl-C is the main process's (it finishes the epoch and saves): helpers start with SIGINT ignored, which Python keeps
  handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
  for share in shares:
    mine, theirs = context.Pipe()
    context.Process(target=helper, args=(setup, args, share, theirs), daemon=True).start()
    pipes.append(mine)
  signal.signal(signal.SIGINT, handler)
  return pipes
