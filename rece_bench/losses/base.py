"""The loss interface, the registry and the parameter checks every loss shares.

A loss class carries its arithmetic and its own parameters only: what a user needs to put it into their own model.
The benchmark's facts about it (display label, knob abbreviations, budget ladder, report order, the authors'
configurations and Table 2 numbers) are its card (``cards.LossCard``), registered beside the class in the same
file; ``budget``, ``report``, ``presets`` and the CLI read the cards, so adding a loss touches its own file only.

Shape letters: see ``docs/notation.md`` (N positions, C items, D width, B sequences, L length, S seen items per
sequence, K negatives; each loss module names its own further letters there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from rece_bench.device import working_block_bytes
from rece_bench.errors import UserError
from rece_bench.losses.cards import card_for
from rece_bench.losses.precision import accumulate_dtype, autocast_off, compute_dtype

LOSSES: dict[str, type[Loss]] = {}
MIB = 1 << 20


@dataclass(frozen=True)
class LossBatch:
    """What the samplers need beyond the positions: the sequence of each position and its user's items."""

    seq_index: torch.Tensor  # (N,) long: row of the (B, L) batch each position belongs to
    seen_items: torch.Tensor  # (B, S) long: each user's training items, 0-based, right-padded with -1


@dataclass(frozen=True)
class ParamSpec:
    """One tunable parameter of a loss, as `rece-bench losses` lists it."""

    name: str
    type: str  # "int", "float", "int | None", "Generator | None"
    default: Any
    help: str
    shown_default: str = ""  # how listings show the default when its repr would not say what it means

    @property
    def default_text(self) -> str:
        return self.shown_default or repr(self.default)


@dataclass(frozen=True)
class LossInfo:
    name: str
    description: str
    params: tuple[ParamSpec, ...]  # the user's parameters (internal ones such as ``generator`` left out)
    needs_batch: bool
    data_inputs: tuple[str, ...] = ()
    label: str = ""


# What the trainer can fill from the prepared data when a loss lists it in ``data_inputs``.
DATA_INPUTS = {"item_counts": "interactions per item in the training split, (C,) long"}


def placeholder_data_inputs(cls: type[Loss], num_items: int) -> dict[str, Any]:
    """Stand-ins of the right shape for a loss's data inputs (every item seen once), to check its parameters
    against a catalogue without the data (the budget drops candidates a catalogue does not allow)."""
    stand_ins = {"item_counts": lambda: torch.ones(num_items, dtype=torch.long)}
    return {key: stand_ins[key]() for key in cls.data_inputs}


INTERNAL_PARAMS = ("generator",)  # set by code (seeding), not by a user on the command line


def register(cls: type[Loss]) -> type[Loss]:
    """Class decorator: add a loss to ``LOSSES`` under its ``name``."""
    if cls.name in LOSSES:
        raise RuntimeError(f"loss {cls.name!r} registered twice")
    unknown = set(cls.data_inputs) - set(DATA_INPUTS)
    if unknown:
        raise RuntimeError(f"loss {cls.name!r} asks for data inputs {sorted(unknown)}; known: {sorted(DATA_INPUTS)}")
    LOSSES[cls.name] = cls
    return cls


def lookup(name: str) -> type[Loss]:
    if name not in LOSSES:
        known = ", ".join(sorted(LOSSES))
        raise UserError(f"unknown loss {name!r}: choose one of {known}")
    return LOSSES[name]


def build_loss(name: str, num_items: int, **params: Any) -> Loss:
    """Build the loss ``name`` for a catalogue of ``num_items`` items; unknown parameters are refused.

    ``params`` holds the loss's parameters and what it asks of the data (``data_inputs``, e.g. ``item_counts``).
    """
    cls = lookup(name)
    allowed = {spec.name for spec in cls.params} | set(cls.data_inputs)
    for key in params:
        if key not in allowed:
            listed = ", ".join(sorted(allowed)) or "none"
            raise UserError(f"loss {name!r} has no parameter {key!r}: its parameters are {listed}")
    return cls(num_items=num_items, **params)


def check_available(name: str, device: Any, precision: str = "fp32") -> None:
    """Refuse a loss that cannot run on ``device`` at ``precision`` here (``Loss.unavailable_reason``): a one-line
    UserError naming the fix, raised before anything is trained or written."""
    reason = lookup(name).unavailable_reason(device, precision)
    if reason is not None:
        raise UserError(f"loss {name!r} cannot run on {device} at {precision} here: {reason}")


def describe_losses() -> list[LossInfo]:
    """Every registered loss with its one-line description and user parameters, in report order, for listings."""
    return [
        LossInfo(
            cls.name,
            cls.description,
            tuple(p for p in cls.params if p.name not in INTERNAL_PARAMS),
            cls.needs_batch,
            cls.data_inputs,
            card_for(cls.name).label,
        )
        for cls in ordered_losses()
    ]


def ordered_losses() -> list[type[Loss]]:
    """The registered loss classes in report order (their card's ``report_rank``, then name)."""
    return sorted(LOSSES.values(), key=lambda cls: (card_for(cls.name).report_rank, cls.name))


class Loss(torch.nn.Module):
    """Base of every loss: ``loss(hidden (N, D), item_emb (C, D), targets (N,), batch=None) -> scalar``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    params: ClassVar[tuple[ParamSpec, ...]] = ()
    needs_batch: ClassVar[bool] = False
    # The version of this implementation: bump it when its memory or speed changes, in the same change as the
    # arithmetic; cached budget probes carry it and are redone.
    revision: ClassVar[int] = 1
    data_inputs: ClassVar[tuple[str, ...]] = ()  # constructor arguments the trainer fills (keys of DATA_INPUTS)

    def __init__(self, num_items: int) -> None:
        super().__init__()
        self.num_items = check_int("num_items", num_items, minimum=1)
        self._values_checked = False  # the target range was read once on a device where reading it syncs

    def forward(
        self,
        hidden: torch.Tensor,
        item_emb: torch.Tensor,
        targets: torch.Tensor,
        batch: LossBatch | None = None,
    ) -> torch.Tensor:
        """The loss, a float32 scalar (float64 for float64 inputs).

        ``hidden`` and ``item_emb`` are cast (differentiably) to one compute dtype, ``precision.compute_dtype``:
        the autocast dtype under autocast, else the wider of theirs. ``compute`` runs with autocast off, so it and
        its autograd Functions see same-dtype inputs whatever the caller's context; each input's gradient comes
        back in its own dtype (a float32 parameter gets a float32 gradient).
        """
        self.check_call(hidden, item_emb, targets, batch)
        dtype = compute_dtype(hidden, item_emb)
        with autocast_off(hidden.device.type):
            value = self.compute(hidden.to(dtype), item_emb.to(dtype), targets, batch)
        return value.to(accumulate_dtype(dtype))

    def check_call(
        self, hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor, batch: LossBatch | None
    ) -> None:
        """Shapes, dtypes and devices on every call (free: metadata); the values of ``targets`` and ``batch``
        on every call where reading them is free (``SYNC_FREE_DEVICE_TYPES``), else on this loss's first call.

        Why not ``torch._assert_async`` on a GPU: a failed device assert poisons the CUDA context (every later
        call fails, the process must restart) and names neither the argument nor the fix. Reading the range once
        costs one synchronisation per loss instance; a bad id is a data error, present from the first batch
        (0- versus 1-based ids, a pad id left in), which the first call catches with a one-line message.
        """
        check_inputs(hidden, item_emb, targets, self.num_items)
        if self.needs_batch:
            if batch is None:
                raise UserError(
                    f"loss {self.name!r} samples negatives per user and needs batch=LossBatch(seq_index, "
                    "seen_items); got batch=None"
                )
            check_batch(batch, hidden.shape[0])
        if self._values_checked:
            return
        check_target_values(targets, self.num_items)
        if self.needs_batch and batch is not None:
            check_batch_values(batch, self.num_items)
        self._values_checked = hidden.device.type not in SYNC_FREE_DEVICE_TYPES

    def compute(
        self, hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor, batch: LossBatch | None
    ) -> torch.Tensor:
        raise NotImplementedError

    def estimate_peak_bytes(self, n_positions: int, dim: int, elem_bytes: int = 4) -> int:
        """Rough need of one forward+backward: inputs, their gradients and the loss's own working memory."""
        return inputs_bytes(n_positions, self.num_items, dim, elem_bytes) + self.work_bytes(
            n_positions, dim, elem_bytes
        )

    def work_bytes(self, n_positions: int, dim: int, elem_bytes: int) -> int:
        return 0

    @classmethod
    def unavailable_reason(cls, device: str | torch.device, precision: str = "fp32") -> str | None:
        """Why this loss cannot run on ``device`` at ``precision`` on this machine (a library, a GPU or a precision
        it needs is missing), ending with the fix; None when it can. ``rece-bench losses`` lists it, and a run,
        sweep or benchmark asking for the loss is refused with it (``check_available``)."""
        return None

    def extra_repr(self) -> str:
        shown = [f"num_items={self.num_items}"]
        shown += [f"{p.name}={getattr(self, p.name)!r}" for p in self.params if p.name != "generator"]
        return ", ".join(shown)


# ---------------------------------------------------------------- working blocks of the streaming losses

AUTO_BLOCK_TEXT = "auto (32 MiB on CPU, sized to free memory on a GPU)"


def block_mib_param(what: str) -> ParamSpec:
    """The ``block_mib`` parameter of a streaming loss; ``what`` says what one block holds."""
    return ParamSpec(
        "block_mib", "float | None", None, f"Working memory of {what}, in MiB; None: the device's.", AUTO_BLOCK_TEXT
    )


def check_block_mib(value: Any) -> float | None:
    return None if value is None else check_float("block_mib", value, 0.0, 1e6, low_open=True)


def block_bytes(block_mib: float | None, device: Any = None) -> int:
    """A working block in bytes: ``block_mib`` when given, else the device's (``device.working_block_bytes``,
    read at call time: 32 MiB on a CPU, sized to the free memory on a GPU); ``device`` None (estimates made
    without a device) means a CPU."""
    if block_mib is not None:
        return int(block_mib * MIB)
    return working_block_bytes("cpu" if device is None else device)


def accumulator_bytes(n_positions: int, num_items: int, dim: int, elem_bytes: int) -> int:
    """The float32 gradient buffers of a loss that gathers its gradients in float32 and casts them to the inputs'
    dtype at the end: beyond the inputs' gradients in bf16 or fp16, nothing in full precision (they are the
    gradients)."""
    return 0 if elem_bytes >= 4 else (n_positions + num_items) * dim * 4


def inputs_bytes(n_positions: int, num_items: int, dim: int, elem_bytes: int) -> int:
    """hidden and item_emb with their gradients, plus the targets."""
    return 2 * (n_positions + num_items) * dim * elem_bytes + 8 * n_positions


# ---------------------------------------------------------------- parameter checks


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise UserError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise UserError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_float(name: str, value: Any, low: float, high: float, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{name} must be a finite number, got {value!r}")
    if value < low or value > high or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise UserError(f"{name} must lie in {bracket}{low}, {high}], got {value}")
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"{name} must be True or False, got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise UserError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_generator(value: Any) -> torch.Generator | None:
    if value is not None and not isinstance(value, torch.Generator):
        raise UserError(f"generator must be a torch.Generator or None, got {type(value).__name__}")
    return value


# Device types where reading a tensor's values on the host is free (nothing to wait for): the input values are
# checked on every call there. Elsewhere (CUDA) they are read on a loss's first call only: each read is a host
# synchronisation, and the losses keep none in the step (tests/losses/test_precision.py counts them).
SYNC_FREE_DEVICE_TYPES = ("cpu",)


def check_inputs(hidden: torch.Tensor, item_emb: torch.Tensor, targets: torch.Tensor, num_items: int) -> None:
    """Shapes, dtypes and devices (metadata only, no value is read); the message names the argument and the fix."""
    if hidden.dim() != 2 or item_emb.dim() != 2:
        raise UserError(
            f"hidden must be (N, D) and item_emb (C, D): got hidden {tuple(hidden.shape)}, "
            f"item_emb {tuple(item_emb.shape)}"
        )
    if hidden.shape[1] != item_emb.shape[1]:
        raise UserError(f"hidden has D={hidden.shape[1]} but item_emb has D={item_emb.shape[1]}: use the same width")
    if not (hidden.is_floating_point() and item_emb.is_floating_point()):
        raise UserError(f"hidden and item_emb must be floating point, got {hidden.dtype} and {item_emb.dtype}")
    if hidden.device != item_emb.device or targets.device != hidden.device:
        raise UserError(
            f"hidden is on {hidden.device}, item_emb on {item_emb.device}, targets on {targets.device}: "
            "put them on one device"
        )
    if item_emb.shape[0] != num_items:
        raise UserError(f"item_emb has {item_emb.shape[0]} rows but the loss was built with num_items={num_items}")
    if targets.dim() != 1 or targets.shape[0] != hidden.shape[0] or targets.dtype != torch.long:
        raise UserError(
            f"targets must be a (N,) long tensor with N={hidden.shape[0]}: got {tuple(targets.shape)} {targets.dtype}"
        )
    if hidden.shape[0] == 0:
        raise UserError("hidden has no positions (N=0): pass at least one non-pad position")


def check_target_values(targets: torch.Tensor, num_items: int) -> None:
    """Every target in [0, C): reads two values (a host synchronisation on a GPU)."""
    low, high = int(targets.min()), int(targets.max())
    if low < 0 or high >= num_items:
        bad = low if low < 0 else high
        raise UserError(f"targets must lie in [0, {num_items}), got {bad} (0-based ids, no pad id)")


def check_batch(batch: LossBatch, n_positions: int) -> None:
    """Shapes and dtypes of a batch (metadata only)."""
    seq_index, seen = batch.seq_index, batch.seen_items
    if seq_index.shape != (n_positions,) or seq_index.dtype != torch.long:
        raise UserError(f"batch.seq_index must be a (N,) long tensor with N={n_positions}, got {seq_index.shape}")
    if seen.dim() != 2 or seen.dtype != torch.long:
        raise UserError(f"batch.seen_items must be a (B, S) long tensor, got {tuple(seen.shape)} {seen.dtype}")


def check_batch_values(batch: LossBatch, num_items: int) -> None:
    """Sequence rows and seen ids in range: reads four values (a host synchronisation on a GPU)."""
    seq_index, seen = batch.seq_index, batch.seen_items
    if int(seq_index.min()) < 0 or int(seq_index.max()) >= seen.shape[0]:
        raise UserError(f"batch.seq_index must lie in [0, {seen.shape[0]}) (rows of seen_items)")
    if seen.numel() and (int(seen.min()) < -1 or int(seen.max()) >= num_items):
        raise UserError(f"batch.seen_items must hold ids in [0, {num_items}) or the pad -1")


def mean_over_positions(per_position: torch.Tensor) -> torch.Tensor:
    """Plain mean over all non-pad positions of the batch (the authors' reduction)."""
    return per_position.mean()
