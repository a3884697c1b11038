"""Every configuration dataclass refuses non-finite numbers, non-integral integers and wrong types, from Python
as from the command line (issue 16: "configs validate completely"). Generated from the dataclasses' fields, so
the class stays closed as fields are added."""

import dataclasses
import math
import typing

import pytest

from cortexnet.config import _checkable, _unwrap, check_fields
from cortexnet.experiments.dale import DaleConfig
from cortexnet.experiments.dst import DSTConfig
from cortexnet.experiments.g2g import G2GExperimentConfig
from cortexnet.experiments.recurrent_vs_feedforward import RecurrentVsFeedforwardConfig
from cortexnet.experiments.representations import ProbeConfig
from cortexnet.experiments.topologies import TopologiesConfig
from cortexnet.models import MODEL_CONFIGS
from cortexnet.rewiring import RewiringConfig
from cortexnet.training import TrainConfig

#: Configurations validated by ``validate()`` (the library's) and at construction (the experiments' options).
VALIDATED = [TrainConfig, RewiringConfig, ProbeConfig, *MODEL_CONFIGS.values()]
CONSTRUCTED = [DaleConfig, DSTConfig, G2GExperimentConfig, RecurrentVsFeedforwardConfig, TopologiesConfig]


def _bad_values(tp):
    """(value, what the message says) pairs a field of type hint ``tp`` must refuse."""
    inner, _ = _unwrap(tp)
    elem = typing.get_args(inner)[0] if typing.get_origin(inner) is tuple else inner
    wrap = (lambda v: (v,)) if typing.get_origin(inner) is tuple else (lambda v: v)
    if elem is float:
        return [
            (wrap(math.nan), "finite"),
            (wrap(math.inf), "finite"),
            (wrap(-math.inf), "finite"),
            (wrap("1"), "number"),
        ]
    if elem is int:
        return [(wrap(2.5), "integer"), (wrap(True), "integer")]
    if elem is bool:
        return [(wrap(1), "true or false")]
    return [(wrap(3), "string")]


def _cases(classes):
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if _checkable(hints[f.name]):
                for value, word in _bad_values(hints[f.name]):
                    yield pytest.param(cls, f.name, value, word, id=f"{cls.__name__}.{f.name}={value!r}")


@pytest.mark.parametrize(("cls", "name", "value", "word"), list(_cases(VALIDATED)))
def test_library_configs_refuse_bad_field_values_at_validation(cls, name, value, word):
    config = dataclasses.replace(cls(), **{name: value}) if not _needs_args(cls) else _probe(**{name: value})
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.{name} .*{word}"):
        config.validate()


@pytest.mark.parametrize(("cls", "name", "value", "word"), list(_cases(CONSTRUCTED)))
def test_experiment_options_refuse_bad_field_values_when_built(cls, name, value, word):
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.{name} .*{word}"):
        cls(**{name: value})


def test_the_generated_cases_cover_every_class_and_good_values_pass():
    assert len(list(_cases(VALIDATED))) > 150 and len(list(_cases(CONSTRUCTED))) > 300
    for cls in CONSTRUCTED:
        check_fields(cls())
    for cls in VALIDATED:
        check_fields(_probe() if _needs_args(cls) else cls())


def _needs_args(cls) -> bool:
    return cls is ProbeConfig


def _probe(**kw):
    return ProbeConfig(**{"checkpoint": ("model.pt",), **kw})
