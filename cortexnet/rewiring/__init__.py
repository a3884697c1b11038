"""Dynamic sparse training: prune/grow criteria, schedules, percolation and the Rewirer (issue 12; DST.md).

The same rules on feed-forward and recurrent (Dale) weights, computed without dense N x N training tensors::

    from cortexnet.rewiring import Rewirer, rewiring_config
    rewirer = Rewirer(model, optimizer, rewiring_config("rigl"), total_steps=steps)
    ...  # after every optimizer.step():
    rewirer.step(batch=(x, y))

Imports layers, connectivity and sparse only (the layering test checks it).
"""

from cortexnet.rewiring.criteria import GROWTH, REMOVAL, LayerView
from cortexnet.rewiring.percolation import percolate_chain, percolate_recurrent
from cortexnet.rewiring.rewirer import PRESETS, Rewirer, RewiringConfig, rewiring_config

__all__ = [
    "GROWTH",
    "PRESETS",
    "REMOVAL",
    "LayerView",
    "Rewirer",
    "RewiringConfig",
    "percolate_chain",
    "percolate_recurrent",
    "rewiring_config",
]
