"""SparseWeight: the active synapses of one weight matrix, with interchangeable compute backends."""

from __future__ import annotations

import contextlib
import functools
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from cortexnet.connectivity import Connectivity
from cortexnet.registry import Registry
from cortexnet.sparse.constraints import enrol, record_projection
from cortexnet.sparse.probes import GradientProbe

#: Backends by name: ``factory(connectivity, *, dale=..., column_sign=..., **options) -> SparseWeight``
#: ("masked_dense", "csr", and "auto", a factory returning one of them).
BACKENDS: Registry = Registry("sparse backend")

DaleMode = Literal["none", "clip", "abs"]
DALE_MODES: tuple[str, ...] = ("none", "clip", "abs")


class SparseWeight(nn.Module, ABC):
    """Stores one ``(n_out, n_in)`` weight restricted to a :class:`Connectivity` and multiplies by it.

    Sign constraints (Dale's law, Fruengel & Oberlaender 2025) act on columns (presynaptic units):

    * ``dale="clip"`` — the paper's rule: after every optimiser step :meth:`apply_constraints_` sets every
      active weight whose sign disagrees with its column's sign to exactly zero (it may regrow later);
    * ``dale="abs"`` — reparametrisation W_eff = |V| · sign(column): the sign can never be wrong, but a value
      at exactly zero has zero gradient and stays there (so it does not combine usefully with sparse-to-dense);
    * ``dale="none"`` — unconstrained.

    Backends differ only in storage and kernels; all expose the same functions and gradients (invariant 5).
    Rewiring changes the active set only through :meth:`set_connectivity_` (one implementation for every
    backend, on small storage hooks): the parameter object stays, kept synapses keep their values and
    optimiser state, changed ones get zero state. :meth:`probe_gradients` gives RigL's gradient at inactive
    positions and :meth:`constraint_violations` checks the mask and Dale's signs, both O(nnz).
    """

    backend: ClassVar[str] = ""
    _probe: GradientProbe | None = None  # set only inside probe_gradients (class default: old pickles)
    #: After ``load_state_dict``: how many loaded values broke the mask or Dale's law and were set to zero.
    load_repairs: dict[str, int] | None = None

    def __init__(
        self, connectivity: Connectivity, *, dale: DaleMode = "none", column_sign: Tensor | None = None
    ):
        super().__init__()
        if dale not in DALE_MODES:
            raise ValueError(f"dale mode must be one of {DALE_MODES}, got {dale!r}")
        if dale != "none":
            if column_sign is None or column_sign.shape != (connectivity.n_in,):
                raise ValueError(
                    f"dale={dale!r} needs column_sign of shape ({connectivity.n_in},), got "
                    f"{None if column_sign is None else tuple(column_sign.shape)}"
                )
            if not bool(((column_sign == 1) | (column_sign == -1)).all()):
                raise ValueError("column_sign must contain only +1 (excitatory) and -1 (inhibitory)")
        self.n_out, self.n_in = connectivity.shape
        self.dale: str = dale
        sign = column_sign if column_sign is not None else torch.ones(self.n_in)
        self.register_buffer("column_sign", sign.to(torch.float32).clone())
        self._probe: GradientProbe | None = None

    # -- interface every backend implements -------------------------------------------------------------
    @abstractmethod
    def linear(self, x: Tensor) -> Tensor:
        """``x Wᵀ``: ``(..., n_in) -> (..., n_out)``."""
        ...

    @abstractmethod
    def to_dense(self) -> Tensor:
        """Detached effective dense weight ``(n_out, n_in)`` (zeros off the mask, Dale signs applied)."""
        ...

    @abstractmethod
    def connectivity(self) -> Connectivity:
        """The current active synapse set (CPU, CSR index form)."""
        ...

    @abstractmethod
    def active_values(self) -> Tensor:
        """Effective weights of the active synapses ``(nnz,)`` in connectivity order (row-major, columns
        ascending, as :meth:`connectivity`), Dale signs applied: a detached copy on the weight's device, O(nnz)
        memory (no dense matrix is built)."""
        ...

    @abstractmethod
    def active_grads(self) -> Tensor | None:
        """Gradient of the stored parameter at the active synapses ``(nnz,)`` in connectivity order (a detached
        copy; for ``dale="abs"`` the gradient of the magnitude), or None before any backward pass."""
        ...

    @abstractmethod
    def load_dense_(self, weight: Tensor) -> None:
        """Set the active synapses' effective weights from a dense ``(n_out, n_in)`` tensor (off-mask
        entries ignored). For ``dale="abs"`` the stored magnitude is ``|weight|``."""
        ...

    @abstractmethod
    def set_values_(self, rows: Tensor, cols: Tensor, values: Tensor) -> None:
        """Set the effective weights at active positions ``(rows[k], cols[k])`` to ``values[k]`` (int64/float
        ``(K,)``) and every other weight to zero. Positions outside the active set raise ``ValueError``."""
        ...

    @abstractmethod
    def apply_constraints_(self) -> None:
        """Re-impose the mask and the Dale sign rule on the stored parameter (call after every update)."""
        ...

    # -- provided ---------------------------------------------------------------------------------------
    def recurrent(
        self, drive: Tensor, activation: str, *, alpha: Tensor | None = None, h0: Tensor | None = None
    ) -> Tensor:
        """Run h_t = (1 - α) h_{t-1} + α act(drive_t + h_{t-1} Wᵀ) over a whole sequence.

        Args:
            drive: ``(T, B, N)`` input drive (x_t W_inᵀ + b, plus any noise), time-major.
            activation: ``"relu"`` or ``"tanh"``.
            alpha: ``(N,)`` leak factors Δt/τ in (0, 1] (a leaky, continuous-time rate network discretised
                by Euler's method), or None for α = 1 (the paper's discrete network, h_t = act(...)).
            h0: ``(B, N)`` initial state h_{-1}, or None for zero.
        Returns:
            ``(T, B, N)`` hidden states. This generic version loops over :meth:`linear` under autograd (the
            reference); backends override it with a fused whole-sequence kernel.
        """
        from cortexnet.sparse.functional import activate_

        if self.n_out != self.n_in:
            raise ValueError(f"recurrent weights must be square, got {self.n_out} x {self.n_in}")
        states = []
        h = h0
        for t in range(drive.shape[0]):
            pre = drive[t] if h is None else drive[t] + self.linear(h)
            rate = activate_(pre.clone(), activation)
            h = rate if alpha is None else (rate * alpha if h is None else (1 - alpha) * h + alpha * rate)
            states.append(h)
        return torch.stack(states)

    def set_connectivity_(
        self,
        connectivity: Connectivity,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        new_values: Tensor | None = None,
    ) -> Tensor:
        """Replace the active set (rewiring), keeping the parameter object so any optimiser holding it works on.

        Args:
            connectivity: the new synapse set, same shape, any synapse count (rewiring conserves it; gradual
                pruning such as CHTss changes it). On compressed storage a new count means a new Parameter
                object, put in this module and in ``optimizer`` in place of the old one (pass the optimiser
                that trains it; any other holder of the old parameter must be refreshed).
            optimizer: if given (it must hold this weight's parameter), every per-element state tensor of the
                parameter (any state of the parameter's shape: Adam/AdamW ``exp_avg``, ``exp_avg_sq``,
                ``max_exp_avg_sq``, SGD ``momentum_buffer``, RMSprop ``square_avg``, ...) moves with the
                values of kept synapses and is reset to exactly zero at every added and every removed synapse.
                Scalar state (``step``) and missing state (no step taken yet, SGD without momentum) are left
                alone, as is state of another shape (Adafactor's factored statistics); non-moment state of
                the parameter's shape is zeroed too (Rprop's ``step_size``). The parameter's ``.grad``, if
                any, is remapped the same way.
            new_values: float ``(n_new,)`` *effective* weights of the added synapses, in connectivity order of
                the added synapses (the positions where the returned map is -1); None: exactly zero. With
                ``dale="abs"`` the stored magnitude is ``|value|`` and a zero never grows (zero gradient), so
                pass a small positive magnitude there; with ``dale="clip"`` a value of the wrong sign is clipped
                to zero by :meth:`apply_constraints_`.

        Returns:
            int64 ``(nnz_new,)`` on the weight's device: for each synapse of ``connectivity`` (connectivity
            order: row-major, columns ascending) its index in the old connectivity order, or -1 if it is new.
            Kept synapses keep their values; afterwards :meth:`apply_constraints_` holds.
        """
        if connectivity.shape != (self.n_out, self.n_in):
            raise ValueError(
                f"set_connectivity_ got connectivity of shape {connectivity.shape}, this weight is "
                f"{(self.n_out, self.n_in)}; build the new connectivity with the weight's shape"
            )
        param = self._parameter()
        states = _per_element_states(optimizer, param) if optimizer is not None else []
        with torch.no_grad():
            dev = param.device
            rows = connectivity.rows().to(dev)
            cols = connectivity.col.to(dev)
            old_keys = self._keys(*self._active_index())
            source = _lookup(old_keys, self._keys(rows, cols))
            added = source < 0
            n_added = int(added.sum())
            if new_values is None:
                fresh = torch.zeros(n_added, dtype=param.dtype, device=dev)
            else:
                if new_values.shape != (n_added,):
                    raise ValueError(
                        f"set_connectivity_ new_values has shape {tuple(new_values.shape)}, but the new "
                        f"connectivity adds {n_added} synapses; pass one value per added synapse ({n_added},) "
                        "in connectivity order, or None for zeros"
                    )
                fresh = new_values.detach().to(device=dev, dtype=param.dtype)
                fresh = fresh.abs() if self.dale == "abs" else fresh
            take = source.clamp(min=0)

            def remap(storage: Tensor, fill: Tensor | float) -> Tensor:
                """A parameter-shaped tensor of the old structure -> the same tensor in the new structure."""
                old = self._gather_active(storage)
                if old.numel():
                    new = old.index_select(0, take)
                else:
                    new = torch.zeros(take.numel(), dtype=storage.dtype, device=storage.device)
                new[added] = fill if isinstance(fill, float) else fill.to(storage.dtype)
                return self._storage_from_active(new, rows, cols)

            values = remap(param, fresh)
            if values.shape == param.shape:  # same storage size: the same objects, updated in place
                param.copy_(values)
                if param.grad is not None:
                    param.grad.copy_(remap(param.grad, 0.0))
                for state in states:
                    state.copy_(remap(state, 0.0))
            else:
                self._replace_parameter_(param, values, optimizer, lambda t: remap(t, 0.0))
            self._set_structure_(connectivity, rows, cols)
        self.apply_constraints_()
        return source

    def _replace_parameter_(
        self, param: nn.Parameter, values: Tensor, optimizer: torch.optim.Optimizer | None, remap: Any
    ) -> None:
        """A new synapse count on compressed storage: a new Parameter of the new size takes the old one's place
        in this module and in ``optimizer`` (its param groups and state, per-element state remapped). Resizing
        the old Parameter in place is not an option: autograd keeps its old shape while any graph that used it
        is alive (\"invalid gradient ... expected shape\" at the next backward)."""
        new = nn.Parameter(values, requires_grad=param.requires_grad)
        if param.grad is not None:
            new.grad = remap(param.grad)
        if optimizer is not None:
            old_state = optimizer.state.pop(param, None)
            if old_state:
                optimizer.state[new] = {
                    k: remap(v) if isinstance(v, Tensor) and v.dim() > 0 and v.shape == param.shape else v
                    for k, v in old_state.items()
                }
            for group in optimizer.param_groups:
                group["params"] = [new if p is param else p for p in group["params"]]
        name = next(n for n, p in self._parameters.items() if p is param)
        self.register_parameter(name, new)

    def reset_synapses_(
        self,
        rows: Tensor,
        cols: Tensor,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        values: Tensor | None = None,
    ) -> None:
        """Restart active synapses as if new: write their *effective* values (``values`` float ``(K,)``; None:
        exactly zero) and zero their per-element optimiser state and ``.grad`` (the states
        :meth:`set_connectivity_` resets). For rewiring, where a link removed and regrown in the same update
        stays active but must not keep its moments. ``rows, cols`` int ``(K,)``: active positions. O(nnz)."""
        rows, cols = self._check_positions(rows, cols, "reset_synapses_")
        index, found = self._search(rows, cols)
        if not bool(found.all()):
            raise ValueError(
                f"reset_synapses_: {int((~found).sum())} of {rows.numel()} positions are not active"
            )
        param = self._parameter()
        fill = torch.zeros(rows.numel(), dtype=param.dtype, device=param.device)
        if values is not None:
            fill = values.detach().to(device=param.device, dtype=param.dtype)
            fill = fill.abs() if self.dale == "abs" else fill
        active_rows, active_cols = self._active_index()
        with torch.no_grad():
            targets = [(param, fill)]
            if param.grad is not None:
                targets.append((param.grad, None))
            targets += [(st, None) for st in (_per_element_states(optimizer, param) if optimizer else [])]
            for storage, value in targets:
                active = self._gather_active(storage).clone()
                active[index] = 0 if value is None else value.to(storage.dtype)
                storage.copy_(self._storage_from_active(active, active_rows, active_cols))
        self.apply_constraints_()

    def constraint_violations(self) -> dict[str, int]:
        """Counts of broken constraints, O(nnz) (no dense matrix on compressed backends).

        Returns:
            ``{"wrong_sign": active effective weights whose sign disagrees with their column's Dale sign (0
            when ``dale == "none"``), "off_mask": stored non-zero values outside the active set (0 by
            construction on compressed backends), "non_finite": NaN/inf among the active values}``.
        """
        wrong = non_finite = 0
        with torch.no_grad():
            for values, sign in self._active_value_chunks():
                if self.dale != "none":
                    wrong += int(((values * sign) < 0).sum())
                non_finite += int((~torch.isfinite(values)).sum())
            off = self._off_mask_count()
        return {"wrong_sign": wrong, "off_mask": off, "non_finite": non_finite}

    def sign_violations(self) -> int:
        """Active weights whose sign disagrees with their column's Dale sign (0 when Dale holds or is off)."""
        return self.constraint_violations()["wrong_sign"]

    @contextlib.contextmanager
    def probe_gradients(self, rows: Tensor, cols: Tensor) -> Iterator[GradientProbe]:
        """Gradient of the loss w.r.t. the *effective* weight at inactive positions (RigL's grow criterion).

        Inside the block :meth:`linear` and :meth:`recurrent` compute with the union of the active synapses and
        the candidates, the candidates at exactly 0 (the function is unchanged); gradients of active synapses
        reach the parameter as usual. After ``loss.backward()`` (inside the block) ``probe.grad`` is float
        ``(K,)`` = dL/dW_eff[rows[k], cols[k]] (also for ``dale="abs"``: taken before |·|, not zeroed by it).
        Memory O(nnz + K) on compressed backends; the weight (structure, values, parameter, kernel cache) is
        untouched after the block.

        Args:
            rows, cols: int ``(K,)`` candidate positions: in range, distinct, none already active.
        """
        if self._probe is not None:
            raise RuntimeError("probe_gradients is already active on this weight; nest no probes, use one")
        param = self._parameter()
        rows, cols = self._check_positions(rows, cols, "probe_gradients")
        keys = self._keys(rows, cols)
        if torch.unique(keys).numel() != keys.numel():
            sorted_keys = keys.sort().values
            dup = int(sorted_keys[:-1][sorted_keys[1:] == sorted_keys[:-1]][0])
            raise ValueError(
                f"probe_gradients candidate ({dup // self.n_in}, {dup % self.n_in}) is listed twice; "
                "pass distinct positions"
            )
        active = self._is_active(rows, cols)
        if bool(active.any()):
            k = int(active.nonzero()[0])
            raise ValueError(
                f"probe_gradients candidate ({int(rows[k])}, {int(cols[k])}) is already an active synapse "
                f"({int(active.sum())} of {rows.numel()} candidates are); pass inactive positions only "
                "(active gradients are in the parameter's .grad)"
            )
        probe = GradientProbe(
            rows, cols, torch.zeros(rows.numel(), dtype=param.dtype, device=param.device, requires_grad=True)
        )
        self._probe = probe
        try:
            yield probe
        finally:
            self._probe = None
            probe.structure = None  # free the temporary union structure

    def register_parameter(self, name: str, param: nn.Parameter | None) -> None:
        """nn.Module's, plus enrolment in the after-step projection (:mod:`cortexnet.sparse.constraints`), so
        the constraints hold after every optimiser step from the moment the weight exists."""
        super().register_parameter(name, param)
        if param is not None:
            enrol(self, param)

    def __init_subclass__(cls, **kwargs) -> None:
        # Every backend's apply_constraints_ records that the constraints hold for the parameter's current
        # version, wherever it is called from (set_values_, load_dense_, set_connectivity_, a projection), so
        # the next product never re-projects in place a weight an autograd graph already holds.
        super().__init_subclass__(**kwargs)
        impl = cls.__dict__.get("apply_constraints_")
        if impl is not None and not getattr(impl, "_records_projection", False):

            @functools.wraps(impl)
            def apply_constraints_(self) -> None:
                impl(self)
                record_projection(self)

            apply_constraints_._records_projection = True  # type: ignore[attr-defined]
            cls.apply_constraints_ = apply_constraints_  # type: ignore[method-assign]

    def _apply(self, fn, *args, **kwargs):
        # .to() / .double() may replace the Parameter object (overwrite-on-conversion): enrol the new one.
        out = super()._apply(fn, *args, **kwargs)
        enrol(self)
        return out

    def __setstate__(self, state: dict) -> None:  # unpickling, deepcopy: enrol the copy's parameter
        super().__setstate__(state)
        enrol(self)

    # -- hooks of the provided mutation / probe / check methods ---------------------------------------------
    @abstractmethod
    def _parameter(self) -> nn.Parameter:
        """The stored parameter (raw values: magnitudes for ``dale="abs"``)."""
        ...

    @abstractmethod
    def _active_index(self) -> tuple[Tensor, Tensor]:
        """int64 ``(rows, cols)`` ``(nnz,)`` of the active synapses in connectivity order, parameter's device."""
        ...

    @abstractmethod
    def _gather_active(self, storage: Tensor) -> Tensor:
        """A parameter-shaped tensor -> its entries at the active synapses ``(nnz,)``, connectivity order."""
        ...

    @abstractmethod
    def _storage_from_active(self, active: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
        """Entries ``(nnz_new,)`` at synapses ``(rows, cols)`` (connectivity order) -> a parameter-shaped
        tensor of that structure (zero elsewhere)."""
        ...

    @abstractmethod
    def _set_structure_(self, connectivity: Connectivity, rows: Tensor, cols: Tensor) -> None:
        """Install the new active set (rows/cols: its int64 COO on the parameter's device)."""
        ...

    @abstractmethod
    def _active_value_chunks(self) -> Iterator[tuple[Tensor, Tensor]]:
        """``(effective values, column signs)`` of the active synapses, in chunks (bounded temporaries)."""
        ...

    def _off_mask_count(self) -> int:
        """Stored non-zero values outside the active set (0 where storage holds active synapses only)."""
        return 0

    def _is_active(self, rows: Tensor, cols: Tensor) -> Tensor:
        """bool ``(K,)``: whether each position is an active synapse."""
        return self._search(rows, cols)[1]

    def _search(self, rows: Tensor, cols: Tensor) -> tuple[Tensor, Tensor]:
        """``(index in connectivity order, found)`` of positions ``(K,)`` among the active synapses."""
        keys = self._keys(rows, cols)
        return _search_sorted(self._keys(*self._active_index()), keys)

    def _keys(self, rows: Tensor, cols: Tensor) -> Tensor:
        """Row-major linear index ``rows · n_in + cols`` (int64), the sort key of connectivity order."""
        return rows.to(torch.int64) * self.n_in + cols.to(torch.int64)

    def _check_positions(self, rows: Tensor, cols: Tensor, what: str) -> tuple[Tensor, Tensor]:
        """Validate int ``(K,)`` positions; return them as int64 on the parameter's device."""
        if rows.dim() != 1 or rows.shape != cols.shape:
            raise ValueError(
                f"{what} needs rows and cols of equal shape (K,), got {tuple(rows.shape)} and "
                f"{tuple(cols.shape)}"
            )
        if rows.is_floating_point() or cols.is_floating_point():
            raise ValueError(f"{what} needs integer rows and cols, got {rows.dtype} and {cols.dtype}")
        dev = self._parameter().device
        rows, cols = rows.to(dev, torch.int64), cols.to(dev, torch.int64)
        for name, idx, size in (("row", rows, self.n_out), ("col", cols, self.n_in)):
            bad = (idx < 0) | (idx >= size)
            if bool(bad.any()):
                raise ValueError(
                    f"{what} got {name} index {int(idx[bad][0])} outside [0, {size}); pass positions inside "
                    f"the ({self.n_out}, {self.n_in}) weight"
                )
        return rows, cols

    # -- checkpoints: any backend's state_dict loads into any other ---------------------------------------
    def _prepare_load(self, state_dict: dict, prefix: str) -> None:
        """Hook: adapt storage (e.g. its synapse count) to the incoming state before it is copied."""

    def _after_load(self) -> None:
        """Hook: refresh derived structures after a state_dict was loaded."""

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        from cortexnet.sparse.checkpoint import convert_layout_, off_mask_values

        off_mask = off_mask_values(state_dict, prefix)  # dropped by the conversion or the projection below
        convert_layout_(state_dict, prefix, self.backend, n_in=self.n_in)
        self._prepare_load(state_dict, prefix)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self._after_load()
        enrol(self)
        # A file written by the trainer obeys the mask and Dale's law already; an edited or foreign one may not,
        # and the backends would then compute different functions from it (the fused masked-dense recurrence
        # reads the stored weight unmasked). Re-impose both and keep count of what changed for the loader.
        self.load_repairs = {"off_mask": off_mask, "wrong_sign": self.constraint_violations()["wrong_sign"]}
        with torch.no_grad():
            self.apply_constraints_()

    @property
    def nnz(self) -> int:
        """Number of active synapses."""
        return self.connectivity().nnz

    def extra_repr(self) -> str:
        return f"backend={self.backend}, shape=({self.n_out}, {self.n_in}), dale={self.dale}"


def make_sparse_weight(
    backend: str,
    connectivity: Connectivity,
    *,
    dale: DaleMode = "none",
    column_sign: Tensor | None = None,
    **options,
) -> SparseWeight:
    """Build a :class:`SparseWeight` with the backend registered as ``backend`` (all weights zero).

    ``backend`` is ``"masked_dense"``, ``"csr"`` or ``"auto"`` (picks one of them, see
    :func:`cortexnet.sparse.auto.choose_backend`). ``options`` go to the backend (e.g. ``batch_hint`` and
    ``device`` for ``"auto"``, ``panel_cols`` for ``"csr"``).
    """
    return BACKENDS.get(backend)(connectivity, dale=dale, column_sign=column_sign, **options)


def _search_sorted(sorted_keys: Tensor, keys: Tensor) -> tuple[Tensor, Tensor]:
    """``(position, found)`` of ``keys`` ``(K,)`` in the ascending ``sorted_keys`` (int64)."""
    if sorted_keys.numel() == 0:
        return torch.zeros_like(keys), torch.zeros_like(keys, dtype=torch.bool)
    pos = torch.searchsorted(sorted_keys, keys).clamp(max=sorted_keys.numel() - 1)
    return pos, sorted_keys[pos] == keys


def _lookup(sorted_keys: Tensor, keys: Tensor) -> Tensor:
    """int64 ``(K,)``: the position of each key in ``sorted_keys``, or -1 where absent."""
    pos, found = _search_sorted(sorted_keys, keys)
    return torch.where(found, pos, torch.full_like(pos, -1))


def _per_element_states(optimizer: torch.optim.Optimizer, param: Tensor) -> list[Tensor]:
    """The optimiser's state tensors of ``param``'s shape (Adam's moments, SGD's momentum, ...)."""
    if not any(p is param for group in optimizer.param_groups for p in group["params"]):
        raise ValueError(
            f"set_connectivity_ got an optimizer ({type(optimizer).__name__}) that does not hold this "
            "weight's parameter; pass the optimiser that trains it (or None)"
        )
    state = optimizer.state.get(param, {})
    return [v for v in state.values() if isinstance(v, Tensor) and v.dim() > 0 and v.shape == param.shape]
