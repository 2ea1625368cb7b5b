"""Where and how a run computes: the indexed device, the precision, and the size of a loss's working block.

This module is the one owner of device strings: ``resolve_device('cuda')`` gives ``cuda:<current index>``, so
nothing downstream meets an index-less CUDA device (``set_per_process_memory_fraction``, NVML and the allocator's
statistics all need one). Precision names map to an autocast dtype (``PRECISIONS``). Losses that stream their work
in blocks ask ``working_block_bytes`` for a block size when the user gave none: cache-sized on a CPU, large on a
GPU (few large launches rather than many small ones), and bounded by the run's memory budget when it has one.

Nothing here runs at import; torch is imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rece_bench.errors import UserError

if TYPE_CHECKING:
    import torch

MIB = 1 << 20

# A CPU wants a block that stays in its caches: 32 MiB measured best on the project's 2-core CPUs (the default
# block_mib of every streaming loss before the device sized it).
CPU_BLOCK_BYTES = 32 * MIB
# A GPU wants few, large launches. Measured on one H200 (shared/reference/GPU.md): RECE (3, 8) at C 173,511,
# N 8,192 launches 9,694 kernels with 32 MiB blocks and 2,108 with 4 GiB ones, and peaks at 577 MiB with 2 GiB
# blocks. Beyond 2 GiB the launch count hardly falls while the peak can grow.
GPU_MAX_BLOCK_BYTES = 2048 * MIB
GPU_MIN_BLOCK_BYTES = 32 * MIB
# Shares of the memory a block may take: of the free device memory without a budget, and of the budget with one
# (a block is live beside the model, its gradients, Adam's state and the activations, and a streaming loss holds
# about three blocks at once).
FREE_MEMORY_SHARE = 1 / 16
BUDGET_SHARE = 1 / 16


@dataclass(frozen=True)
class Precision:
    """How a run computes: ``fp32`` plain, or autocast to ``bf16`` / ``fp16`` (fp16 with a gradient scaler)."""

    name: str
    autocast_dtype_name: str | None  # 'bfloat16', 'float16', or None (no autocast)
    needs_scaler: bool

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        import torch

        return None if self.autocast_dtype_name is None else getattr(torch, self.autocast_dtype_name)


PRECISIONS: dict[str, Precision] = {
    "fp32": Precision("fp32", None, False),
    "bf16": Precision("bf16", "bfloat16", False),
    "fp16": Precision("fp16", "float16", True),
}


def precision_of(name: str) -> Precision:
    """The precision called ``name``; anything else is a one-line UserError naming the choices."""
    if name not in PRECISIONS:
        raise UserError(f"--precision {name!r} is not a precision: use one of {', '.join(PRECISIONS)}")
    return PRECISIONS[name]


def resolve_device(text: Any) -> torch.device:
    """An indexed torch.device this machine has: 'cpu', or 'cuda' / 'cuda:N' with the index filled in.

    'cuda' means the current CUDA device (``torch.cuda.current_device()``, as torch itself reads it); a bad string,
    CUDA without a GPU, an index past the last GPU, or another device type is a UserError naming the fix.
    """
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, TypeError):
        raise UserError(f"--device {text!r} is not a device: use cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise UserError(f"--device {text}: only cpu and cuda are measured")
    if not torch.cuda.is_available():
        raise UserError(f"--device {text} asked for, but CUDA is not available here: use --device cpu")
    index = torch.cuda.current_device() if device.index is None else device.index
    count = torch.cuda.device_count()
    if index >= count:
        raise UserError(f"--device {text}: this machine has {count} CUDA device(s): use cuda:0 .. cuda:{count - 1}")
    return torch.device("cuda", index)


def gpu_block_bytes(free_bytes: int, budget_bytes: int | None = None) -> int:
    """The working block of a streaming loss on a GPU with ``free_bytes`` free, under an optional budget.

    With a budget the block depends on the budget alone, so the budget's probe and the training run it chose use
    the same block whatever else holds device memory; without one, on the free memory. Rounded down to a power
    of two MiB between ``GPU_MIN_BLOCK_BYTES`` and ``GPU_MAX_BLOCK_BYTES``.
    """
    room = budget_bytes * BUDGET_SHARE if budget_bytes is not None else free_bytes * FREE_MEMORY_SHARE
    mib = max(1, int(room) // MIB)
    power = 1 << (mib.bit_length() - 1)  # the largest power of two MiB not above the room
    return max(GPU_MIN_BLOCK_BYTES, min(GPU_MAX_BLOCK_BYTES, power * MIB))


_FREE_BYTES: dict[int, int] = {}  # free memory per CUDA index, read once per process (a driver call)


def working_block_bytes(device: Any, budget_bytes: int | None = None) -> int:
    """The block size for a loss computing on ``device`` (a torch.device or a tensor's ``.device``).

    CPU: ``CPU_BLOCK_BYTES``. CUDA: ``gpu_block_bytes`` of the device's free memory when first asked in this
    process (so every step of a run uses the same block) or of the budget.
    """
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return CPU_BLOCK_BYTES
    index = device.index if device.index is not None else torch.cuda.current_device()
    if budget_bytes is None and index not in _FREE_BYTES:
        _FREE_BYTES[index] = int(torch.cuda.mem_get_info(index)[0])
    return gpu_block_bytes(_FREE_BYTES.get(index, 0), budget_bytes)


@dataclass(frozen=True)
class Compute:
    """Where and how a run computes, resolved once per command (and once per Ray worker) and passed down.

    ``device`` is an indexed torch.device; ``precision`` says whether the model's forward and the loss run under
    autocast and whether fp16's gradient scaler is needed. Every CUDA call that needs an index (the memory cap, the
    allocator's statistics, synchronising, NVML) goes through here, so none of them meets an index-less 'cuda'.
    Build one with ``compute_for``.
    """

    device: torch.device
    precision: Precision = PRECISIONS["fp32"]

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self):
        """The autocast context of this precision on this device type; for fp32, autocast off (an outer one too:
        fp32 means float32 arithmetic)."""
        import torch

        dtype = self.precision.autocast_dtype
        if dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A gradient scaler for fp16 (its small exponent range underflows gradients), None for fp32 and bf16."""
        import torch

        return torch.amp.GradScaler(self.device.type) if self.precision.needs_scaler else None

    def cap_memory(self, budget_bytes: int | None) -> None:
        """On CUDA, cap this process's allocator at ``budget_bytes`` (a larger allocation raises OutOfMemoryError);
        None lifts the cap. Nothing happens on CPU, which has no allocator cap."""
        import torch

        if not self.is_cuda:
            return
        fraction = 1.0
        if budget_bytes is not None:
            fraction = min(1.0, budget_bytes / torch.cuda.get_device_properties(self.device).total_memory)
        torch.cuda.set_per_process_memory_fraction(fraction, self.device)

    def synchronize(self) -> None:
        """Wait for this device's queued work (CUDA); nothing to wait for on CPU."""
        import torch

        if self.is_cuda:
            torch.cuda.synchronize(self.device)

    def empty_cache(self) -> None:
        import torch

        if self.is_cuda:
            torch.cuda.empty_cache()

    def reset_peak(self) -> int:
        """CUDA: synchronise, reset the allocator's peak and return the bytes allocated now; 0 on CPU."""
        import torch

        if not self.is_cuda:
            return 0
        self.synchronize()
        torch.cuda.reset_peak_memory_stats(self.device)
        return int(torch.cuda.memory_allocated(self.device))

    def allocator_peak_bytes(self) -> int | None:
        """CUDA: the allocator's peak since the last reset; None on CPU (no allocator peak there)."""
        import torch

        return int(torch.cuda.max_memory_allocated(self.device)) if self.is_cuda else None

    def free_bytes(self) -> int | None:
        """CUDA: the free device memory; None on CPU (see ``bench.loss.free_memory_bytes``)."""
        import torch

        return int(torch.cuda.mem_get_info(self.device)[0]) if self.is_cuda else None

    def nvml_used_bytes(self) -> int | None:
        """Memory in use on this GPU as NVML sees it (every process, the CUDA context included); None on CPU or
        without NVML."""
        return nvml_used_bytes(self.device) if self.is_cuda else None

    def describe(self) -> str:
        """'cpu' or 'cuda:<index> (<GPU name>)', for probe caches and logs."""
        import torch

        if not self.is_cuda:
            return self.device.type
        return f"{self.device} ({torch.cuda.get_device_name(self.device)})"


def compute_for(device: Any = "cpu", precision: str = "fp32") -> Compute:
    """The Compute of a device (a string, a torch.device or a Compute's) and a precision name; UserError if bad."""
    if isinstance(device, Compute):
        return device
    return Compute(resolve_device(device), precision_of(precision))


def nvml_used_bytes(device: Any) -> int | None:
    """Used memory, as NVML reports it, of the GPU that torch calls ``device`` (an indexed CUDA torch.device).

    torch's index and NVML's index need not agree: CUDA_VISIBLE_DEVICES renumbers what torch sees (a Ray worker
    given GPU 3 calls it cuda:0) and CUDA may order GPUs differently from NVML. So the GPU is found by its UUID,
    else its PCI bus id, both read from torch; None when NVML, the driver or the GPU is not there.
    """
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no NVML library or no driver: the number is simply unavailable
        return None
    try:
        handle = _nvml_handle(pynvml, device)
        return None if handle is None else int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
    except Exception:
        return None
    finally:
        pynvml.nvmlShutdown()


def _nvml_handle(pynvml, device: Any):
    """NVML's handle of torch's CUDA ``device``: by UUID, then by PCI bus id; None when neither is known."""
    import torch

    props = torch.cuda.get_device_properties(device)
    uuid = str(getattr(props, "uuid", "") or "")
    if uuid:
        name = uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"  # NVML's form of the UUID
        with contextlib.suppress(Exception):  # an unknown UUID: try the bus id
            return pynvml.nvmlDeviceGetHandleByUUID(name.encode())
    if getattr(props, "pci_bus_id", None) is None:
        return None
    # domain:bus:device.function, hex, as NVML reads it
    bus_id = f"{getattr(props, 'pci_domain_id', 0):08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
    return pynvml.nvmlDeviceGetHandleByPciBusId(bus_id.encode())
