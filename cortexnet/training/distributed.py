"""Data-parallel training with ``torch.distributed``: one network, each rank a slice of every batch.

``torchrun --nproc-per-node K -m cortexnet.experiments.dale ...`` starts K processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and a rendezvous in the environment; :func:`fit` then trains one network with
all of them. Every rank builds the same model from the same seeds and draws the same batch order from the same
data generator; rank r computes the loss of its slice ``batch[r::K]`` of every batch, the gradients are summed
over ranks (``all_reduce``) and divided by the number of scored targets of the *global* batch, so each
optimiser step is the step of one process on the whole batch (to float rounding: the sum's order differs).
Sparse weights, masks, E/I identities and the constraints are then identical on every rank by construction;
:meth:`DistributedContext.check_identical` asserts it at the start. Rank 0 alone writes checkpoints, history and
results. The process group uses ``gloo`` on CPU and ``nccl`` on CUDA.

Why not ``DistributedDataParallel``: rewiring replaces a sparse weight's parameter mid-run (csr), which DDP's
parameter buckets do not allow, and the loss here is normalised by the global count of scored steps (per-step
tasks score unequal numbers per slice), which DDP's gradient averaging would get wrong. The gradient all-reduce
is one call per parameter after ``backward``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn


def distributed_env() -> bool:
    """Whether this process was started by ``torchrun`` (or another launcher) with more than one rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_group() -> None:
    """Join the default process group from the ``torchrun`` environment (once): gloo for CPU tensors, nccl for
    CUDA tensors when CUDA is available."""
    if not dist.is_initialized():
        dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")


def rank() -> int:
    """This process's rank in a data-parallel run (0 when there is none)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def shared_from_rank0(make):
    """``make()`` run on rank 0 only and its result (picklable) given to every rank; an exception on rank 0 is
    raised on every rank (as the same type with the same message), so no rank waits forever."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return make()
    box: list = [None]
    if dist.get_rank() == 0:
        try:
            box[0] = ("ok", make())
        except Exception as exc:  # given to the other ranks, then raised here too
            box[0] = ("error", exc)
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


@dataclass
class DistributedContext:
    """The rank of this process among ``world`` and what data-parallel training needs from the group."""

    rank: int
    world: int
    device: torch.device

    @classmethod
    def from_env(cls, device: torch.device) -> DistributedContext:
        """Join (or create) the default process group from the ``torchrun`` environment. The backend is ``nccl``
        for a CUDA device (each rank on ``cuda:LOCAL_RANK``), ``gloo`` otherwise."""
        init_group()
        return cls(dist.get_rank(), dist.get_world_size(), device)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files."""
        return self.rank == 0

    def local_slice(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """This rank's share of a global batch: samples ``rank, rank + world, ...``."""
        return x[self.rank :: self.world], y[self.rank :: self.world]

    def total(self, value: float | int) -> float:
        """The sum of ``value`` over ranks (float64)."""
        t = torch.tensor(float(value), dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t)
        return float(t)

    def reduce_gradients_(self, model: nn.Module, scale: float) -> None:
        """Sum every parameter's gradient over ranks and multiply by ``scale`` (1 / global scored count, when the
        local losses were sums). A parameter without a gradient on this rank contributes zeros."""
        for p in model.parameters():
            if not p.requires_grad:
                continue
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
            p.grad.mul_(scale)

    def check_identical(self, model: nn.Module) -> None:
        """Raise ``RuntimeError`` unless every rank holds the same parameters and buffers (masks, E/I
        identities, initial weights): a sha256 of the state_dict, compared through an all-gather."""
        h = hashlib.sha256()
        for key, value in model.state_dict().items():
            if isinstance(value, Tensor):
                h.update(key.encode())
                h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
        mine = torch.tensor(list(h.digest()[:16]), dtype=torch.int64, device=self._comm_device())
        every = [torch.zeros_like(mine) for _ in range(self.world)]
        dist.all_gather(every, mine)
        differ = [r for r, d in enumerate(every) if not torch.equal(d, every[0])]
        if differ:
            raise RuntimeError(
                f"data-parallel ranks {differ} built a different network from rank 0 (masks, E/I identities or "
                "initial weights differ): every rank must run the same command with the same seeds"
            )

    def barrier(self) -> None:
        dist.barrier()

    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")
