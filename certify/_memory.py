"""The memory certify's bound computations may use, and the chunk sizes chosen from it (issue 14).

certify's engines split their coefficient and interval tensors into chunks (of inputs, of neurons, of rows)
sized by byte budgets of two kinds:

* **speed knobs** (cache-sized, chosen by measurement; they do not follow the memory): ``crown.CHUNK_BYTES``,
  ``ibp.IBP_CHUNK_BYTES``, ``crown.DENSE_CONV_MAX_ELEMENTS``, ``crown.PATCH_MAP_MAX_ELEMENTS``,
  ``_sound.DENSE_MAX`` and ``_graph.densify``'s ``max_elements``. They are small (a few MiB) or bound
  per-layer caches, not working sets.
* **memory caps** (the most one chunk's coefficient tensor may take): ``crown.PREFIX_BYTES``,
  ``crown.ALL_NEURONS_BYTES``, ``crown.PATCH_BYTES``, ``alpha_crown.INTERMEDIATE_BYTES`` and
  ``_sound.SOUND_CHUNK_BYTES``, plus the memory side of ``ibp``'s and ``crown.backward``'s chunks of inputs.
  At call time each becomes ``min(cap, FRACTION * available / copies)`` (:func:`units`), where ``copies`` is
  a closed-form count of the tensors of a chunk's size that a step holds at once (lower/upper coefficients,
  the relaxation's slopes gathered to them, positive/negative parts, the products) and ``available`` is
  :func:`available_bytes`. So chunks shrink when memory is short instead of the process being killed by the
  operating system, and where even the smallest chunk cannot fit, a :class:`MemoryError` naming the method,
  the node, the bytes needed and the budget is raised before anything is allocated.

Chunking never changes a bound: inputs are independent and each neuron's (row's) bound is computed on its
own, so the results are those of the whole batch at once (identical in float64 up to the order of summation
inside a matrix product, which the tests check to 1e-12).

The memory available is, in order: the innermost :func:`memory_budget` block; the environment variable
``CERTKIT_MEMORY_BUDGET`` (bytes, or a number with a unit: ``512MiB``, ``2G``, ``1.5GB``); for CUDA tensors
``torch.cuda.mem_get_info`` (free device memory); for the CPU the smaller of ``MemAvailable`` in
``/proc/meminfo`` and the cgroup's free memory (``memory.max - memory.current``), else ``psutil``'s available
memory, else ``os.sysconf`` (free pages), else :data:`FALLBACK_BYTES`. The system is asked only when a
chunk at its speed-optimal size would take more than :data:`QUERY_FLOOR` bytes (reading ``/proc`` costs
tens of microseconds; small networks never pay it).
"""

from __future__ import annotations

import math
import os
import platform
import re
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any

import torch

__all__ = ["ALLOCATOR_WARMUP_BYTES", "ENV", "FALLBACK_BYTES", "FRACTION", "QUERY_FLOOR", "available_bytes",
           "memory_budget", "parse_bytes", "units", "warm_allocator"]

#: the environment variable of the user's memory budget (bytes, or a number with a unit)
ENV = "CERTKIT_MEMORY_BUDGET"
#: share of the available memory one chunk's working set may take (the rest: what the call keeps between
#: chunks -- bounds, relaxations, caches -- the allocator's slack, and other processes)
FRACTION = 0.5
#: the memory assumed available when the system reports nothing
FALLBACK_BYTES = 1 << 31
#: a chunk whose working set stays under this many bytes is not checked against the system's memory
QUERY_FLOOR = 1 << 26

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "ki": 1 << 10, "kib": 1 << 10, "kb": 10**3,
          "m": 1 << 20, "mi": 1 << 20, "mib": 1 << 20, "mb": 10**6,
          "g": 1 << 30, "gi": 1 << 30, "gib": 1 << 30, "gb": 10**9,
          "t": 1 << 40, "ti": 1 << 40, "tib": 1 << 40, "tb": 10**12}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?(?:[eE]\d+)?)\s*([a-zA-Z]*)\s*$")

_OVERRIDE: ContextVar[tuple[int | None, str] | None] = ContextVar("certify_memory_budget", default=None)


def parse_bytes(value: Any, name: str = "limit") -> int:
    """``value`` as a number of bytes >= 1: an int, or a string of a number with an optional unit (``B``;
    binary ``K``/``Ki``/``KiB``, ``M``..., ``G``..., ``T``...; decimal ``kB``, ``MB``, ``GB``, ``TB``; case
    ignored). Raises TypeError/ValueError naming ``name`` and the expected value otherwise."""
    expected = ("a number of bytes >= 1: an int, or a string such as '1073741824', '512MiB', '2G' or '1.5GB' "
                "(K/M/G/T and KiB/MiB/GiB/TiB are powers of 1024, kB/MB/GB/TB powers of 1000)")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"Expected argument `{name}` to be {expected}, but got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"Expected argument `{name}` to be {expected}, but got {value!r}")
        return int(value)
    m = _PATTERN.match(value)
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _UNITS:
        raise ValueError(f"Expected argument `{name}` to be {expected}, but got {value!r}")
    n = float(m.group(1)) * _UNITS[unit]
    if not (math.isfinite(n) and n >= 1):
        raise ValueError(f"Expected argument `{name}` to be {expected}, but got {value!r}")
    return int(n)


class _Budget:
    """The context manager :func:`memory_budget` returns (re-entrant; nests: the innermost block wins)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._tokens: list[Token[tuple[int | None, str] | None]] = []

    def __enter__(self) -> None:
        self._tokens.append(_OVERRIDE.set((self.limit, "certify.memory_budget")))

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        _OVERRIDE.reset(self._tokens.pop())


def memory_budget(limit: int | str | None) -> _Budget:
    """A context manager: inside ``with certify.memory_budget(limit):`` certify's bound computations
    (IBP, CROWN, CROWN-IBP, alpha-CROWN, ``sound=True``; and what calls them: ``verify``,
    ``verify_complete``, certified training, ...) take ``limit`` as the memory available to them, instead of
    what the system reports (``/proc/meminfo``'s ``MemAvailable`` and the cgroup limit on the CPU,
    ``torch.cuda.mem_get_info`` on a GPU) or the environment variable ``CERTKIT_MEMORY_BUDGET``.

    Guarantee: chunks of inputs, neurons and rows are sized so that one chunk's working set (a closed-form
    count of the tensors a step holds) stays under half of ``limit``; when even the smallest chunk (one row
    of one input) needs more, the call raises :class:`MemoryError` naming the method, the node, the bytes
    needed and the budget, before allocating it. The bounds do not depend on the budget (chunking splits
    independent inputs and rows; float64 results agree to the order of summation). What the call keeps
    between chunks (the bounds of every layer of the batch, the network and its caches) is not counted:
    ``limit`` is a working-set budget, not a hard cap on the process.

    Args:
        limit: bytes (an int >= 1, or a string with a unit: ``"512MiB"``, ``"2G"``, ``"1.5GB"``; K/M/G/T and
            KiB/MiB/GiB/TiB are powers of 1024, kB/MB/GB/TB powers of 1000), or None to use the system's
            report even where ``CERTKIT_MEMORY_BUDGET`` is set.

    Returns:
        A context manager (re-entrant; nested blocks: the innermost wins; per thread and asyncio task).

    Raises:
        TypeError, ValueError: ``limit`` is not a positive number of bytes.
    """
    return _Budget(None if limit is None else parse_bytes(limit, "limit"))


def _override() -> tuple[int | None, str] | None:
    """(limit or None for the system's report, where it comes from), or None without any override."""
    hit = _OVERRIDE.get()
    if hit is not None:
        return hit
    env = os.environ.get(ENV)
    if env is None or not env.strip():
        return None
    return parse_bytes(env, ENV), f"the environment variable {ENV}"


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_free() -> int | None:
    """Free memory under the cgroup v2 (``memory.max - memory.current``) or v1 limit, None without one."""
    for lim_path, cur_path in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                               ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        lim, cur = _read_int(lim_path), _read_int(cur_path)
        if lim is not None and cur is not None and lim < 1 << 60:  # v1 reports "no limit" as a huge number
            return max(0, lim - cur)
    return None


def _system_cpu() -> tuple[int, str]:
    """(bytes available to a new allocation on this machine, where the number comes from)."""
    avail: int | None = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail, where = int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"
                    break
    except (OSError, ValueError, IndexError):
        avail = None
    if avail is None:
        try:
            import psutil

            avail, where = int(psutil.virtual_memory().available), "psutil.virtual_memory().available"
        except Exception:  # not installed, or no report on this platform
            avail = None
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            where = "os.sysconf (free pages)"
        except (AttributeError, OSError, ValueError):
            return FALLBACK_BYTES, "certify._memory.FALLBACK_BYTES (the system reports no free memory)"
    cg = _cgroup_free()
    if cg is not None and cg < avail:
        return cg, "the cgroup's memory limit less its usage"
    return avail, where


def _system(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free), f"free memory of {device} (torch.cuda.mem_get_info)"
    return _system_cpu()


def available_bytes(device: torch.device | str = "cpu") -> int:
    """The memory certify takes as available on ``device`` (bytes): the innermost :func:`memory_budget`,
    else ``CERTKIT_MEMORY_BUDGET``, else the system's report (see the module docstring)."""
    return _available(torch.device(device))[0]


def _available(device: torch.device) -> tuple[int, str]:
    o = _override()
    if o is not None and o[0] is not None:
        return o[0], o[1]
    return _system(device)


def units(unit_bytes: int, *, cap: int, copies: int, device: torch.device, what: str) -> int:
    """How many units of ``unit_bytes`` (one input, one row, ...) one chunk may hold: at most ``cap`` bytes
    (the speed-optimal or default cap of one tensor, as before; at least one unit) and at most
    ``FRACTION * available / copies`` bytes, ``copies`` being how many tensors of the chunk's size a step holds.

    Raises MemoryError (before anything is allocated) when one unit's working set, ``unit_bytes * copies``,
    exceeds ``FRACTION * available``; the message names ``what`` (the method and the node), the bytes needed
    and the budget."""
    unit = max(1, int(unit_bytes))
    n = max(1, int(cap) // unit)
    o = _override()
    avail: int
    if o is not None and o[0] is not None:
        avail, where = o[0], o[1]
    elif n * unit * copies <= QUERY_FLOOR:
        return n
    else:
        avail, where = _system(device)
    budget = int(avail * FRACTION)
    need = unit * copies
    if need > budget:
        raise MemoryError(
            f"{what} needs {_fmt(need)} for its smallest chunk ({_fmt(unit)} of coefficients x {copies} working "
            f"copies), more than its memory budget of {_fmt(budget)} ({FRACTION:.0%} of the {_fmt(avail)} "
            f"available: {where}); use a smaller batch, a cheaper method (method='crown-ibp' or 'ibp'), or give it "
            f"more memory (with certify.memory_budget(...) or {ENV}, if the machine has it)")
    return max(1, min(n, budget // need))


def _fmt(n: int) -> str:
    return f"{n} bytes ({n / 2**20:.1f} MiB)"


#: the one block :func:`warm_allocator` allocates and frees (a speed knob; 0 switches the warm-up off)
ALLOCATOR_WARMUP_BYTES = 1 << 23
_WARMED: list[bool] = []


def warm_allocator() -> None:
    """Once per process, where the C library is glibc: allocate and free one block of
    :data:`ALLOCATOR_WARMUP_BYTES` (8 MiB) of CPU memory, before the first bound computation.

    glibc's ``malloc`` serves blocks above its mmap threshold (128 KiB when a process starts) with fresh pages
    from the kernel and returns them when they are freed; freeing such a block raises the threshold to its
    size (glibc's dynamic threshold, up to 32 MiB) and the heap's trim threshold to twice that. Until the
    process has freed a block of a few MiB, a call whose tensors are a few hundred KiB to a few MiB (IBP on
    a small CIFAR CNN at batch 32) gets fresh pages every time: one page fault per 4 KiB, measured at ~170
    faults and 20-30% of IBP's CPU time per call on cnn_4layer (``benchmarks/bench_bounds.py``). Any large
    temporary a process frees (a batch of data, a bigger model) has the same effect, so this only makes the
    first calls in a fresh process behave like the later ones; the price is that freed heap memory up to
    16 MiB (twice the block) may stay with the process instead of going back to the system. Nothing else
    changes (no allocator setting is written; with another allocator the block is just allocated and freed)."""
    if _WARMED:
        return
    _WARMED.append(True)
    if ALLOCATOR_WARMUP_BYTES <= 0 or platform.system() != "Linux":
        return
    try:
        glibc = platform.libc_ver()[0] == "glibc"
    except (OSError, ValueError):  # the executable could not be read: assume another C library
        glibc = False
    if glibc:
        block = torch.empty(int(ALLOCATOR_WARMUP_BYTES), dtype=torch.uint8)
        del block
