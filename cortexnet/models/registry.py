"""The model registry: name -> ``factory(config, n_inputs, n_classes) -> nn.Module``."""

from cortexnet.registry import Registry

MODELS: Registry = Registry("model")

#: name -> config dataclass, so that a checkpoint's saved config can be turned back into a model.
MODEL_CONFIGS: dict[str, type] = {}
