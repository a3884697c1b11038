"""Layers: modules owning parameters and masks (recurrent E/I layer, sparse linear, readouts)."""

from torch import nn

from cortexnet.layers.recurrent import REC_INIT_SCALE, RecurrentLayer


def apply_constraints(module: nn.Module) -> None:
    """Enforce every constraint (masks, Dale's law) of every submodule that has one, in place.

    The trainer calls this after every optimiser step; any module with an ``apply_constraints_`` method
    takes part, so new layer types plug in without touching the trainer.
    """
    for m in module.modules():
        fn = getattr(m, "apply_constraints_", None)
        if fn is not None:
            fn()


__all__ = ["REC_INIT_SCALE", "RecurrentLayer", "apply_constraints"]
