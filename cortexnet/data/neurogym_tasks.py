"""Cognitive tasks from NeuroGym (``neurogym``) as a dataset with per-step targets.

``load_dataset("neurogym", options={"task": "pdm", ...})`` generates trials of a NeuroGym task (perceptual
decision making, context-dependent decision making, delayed match-to-sample, or any other trial-based NeuroGym
task with discrete actions) and returns them as sequences:

* **one trial per sequence**, starting at step 0: ``x`` float32 ``(n, T, F)`` holds the task's observations
  (F = the observation size), ``y`` int64 ``(n, T)`` the task's ground-truth action at the steps that are scored
  and :data:`~cortexnet.data.sequences.IGNORE_INDEX` (-100) elsewhere — so "accuracy on the response period" is
  accuracy per trial, never a window cut across two trials (NeuroGym's own ``Dataset`` concatenates trials back to
  back; this loader does not);
* T is the option ``seq_len``, by default the longest trial generated; a shorter trial is followed by zero inputs
  and unscored steps, a longer one is cut after T steps (logged, and counted in ``metadata["truncated"]``);
* ``score="decision"`` (default) scores the steps of the task's ``decision`` period only (NeuroGym's
  ``start_ind["decision"]`` to ``end_ind["decision"]``, the response window in which the task rewards a choice);
  ``score="all"`` scores every step of the trial, fixation included (target 0 = fixate).

``n_classes`` is the size of the task's action space (fixation is class 0 in the native tasks, so chance on the
decision period is 1 / (n_classes - 1) there, not ``chance_level``'s 1 / n_classes).

Trials are seeded (the option ``seed``; train and test use independent streams, so ``n_trials`` never changes the
test set) and cached under ``<root>/neurogym/`` keyed by the options and the neurogym version: the second load
reads the cache and does not import neurogym. neurogym is an optional dependency, imported only when trials are
generated: ``pip install "cortexnet[neurogym]"``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import logging
import math
import numbers
import re
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .cache import load_npz, save_npz, warn_rebuild
from .errors import DataError
from .sequences import IGNORE_INDEX, pad_trials
from .sources import DATASETS, DatasetLoader
from .splits import SourceData

logger = logging.getLogger(__name__)

NAME = "neurogym"
INSTALL_HINT = 'pip install "cortexnet[neurogym]"'
#: short names of the tasks used most (lower case).
ALIASES: dict[str, str] = {
    "pdm": "PerceptualDecisionMaking-v0",
    "cdi": "ContextDecisionMaking-v0",
    "context": "ContextDecisionMaking-v0",
    "dms": "DelayMatchSample-v0",
}
SCORES = ("decision", "all")
#: the period whose steps ``score="decision"`` scores
DECISION_PERIOD = "decision"
_DEFAULTS: dict[str, Any] = {
    "task": "PerceptualDecisionMaking-v0",
    "n_trials": 4000,
    "n_test": 1000,
    "seq_len": None,
    "dt": None,
    "seed": 0,
    "score": "decision",
    "env_kwargs": {},
}
_CACHE_FORMAT = 1
_ARRAYS = ("train_x", "train_y", "test_x", "test_y")
_TRAIN_STREAM, _TEST_STREAM = 0, 1
_ABSENT = object()


# ----------------------------------------------------------------------------------------------------- options
def _count(key: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ValueError(f"{NAME} option {key} must be an integer >= {least}, got {value!r}")
    return int(value)


def resolve_task(task: Any) -> str:
    """The NeuroGym task id that ``task`` names: an alias (``pdm``, ``cdi``/``context``, ``dms``; any case), an id
    (``"DelayMatchSample-v0"``), or an id without its version (``"DelayMatchSample"`` → ``-v0``)."""
    if not isinstance(task, str) or not task.strip():
        raise ValueError(
            f"{NAME} option task must be a NeuroGym task id (e.g. 'PerceptualDecisionMaking-v0') or one of the "
            f"aliases {sorted(ALIASES)}, got {task!r}"
        )
    task = task.strip()
    if task.lower() in ALIASES:
        return ALIASES[task.lower()]
    return task if re.search(r"-v\d+$", task) else f"{task}-v0"


def parse_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate ``neurogym`` options and fill defaults (no I/O, no import of neurogym). Keys:

    - ``task``: a NeuroGym task id (default ``"PerceptualDecisionMaking-v0"``) or an alias: ``pdm`` →
      PerceptualDecisionMaking-v0, ``cdi`` / ``context`` → ContextDecisionMaking-v0, ``dms`` →
      DelayMatchSample-v0. Whether neurogym knows the id is checked when trials are generated.
    - ``n_trials``: training trials (default 4000); ``n_test``: test trials (default 1000); integers >= 1.
    - ``seq_len``: T, the steps of every sequence (integer >= 1); default ``None`` = the longest trial generated.
      Shorter trials are padded at the end (input 0, target ``IGNORE_INDEX``), longer ones truncated.
    - ``dt``: the time step in ms, passed to the task (a positive number); default ``None`` = the task's own
      (100 ms for the three tasks above).
    - ``seed``: non-negative integer (default 0) seeding the trials; train and test use independent streams.
    - ``score``: ``"decision"`` (default: only the decision period's steps are scored) or ``"all"`` (every step of
      the trial, fixation included).
    - ``env_kwargs``: other keyword arguments of the task's constructor, JSON values (e.g.
      ``{"sigma": 0.5, "timing": {"delay": 500}}``); default ``{}``.
    """
    opts = dict(options or {})
    unknown = sorted(set(opts) - set(_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown {NAME} option(s) {unknown}; allowed: {sorted(_DEFAULTS)}")
    out = {**_DEFAULTS, **opts}
    out["task"] = resolve_task(out["task"])
    out["n_trials"] = _count("n_trials", out["n_trials"], 1)
    out["n_test"] = _count("n_test", out["n_test"], 1)
    if out["seq_len"] is not None:
        out["seq_len"] = _count("seq_len", out["seq_len"], 1)
    out["seed"] = _count("seed", out["seed"], 0)
    dt = out["dt"]
    if dt is not None:
        if isinstance(dt, bool) or not isinstance(dt, numbers.Real) or not math.isfinite(dt) or dt <= 0:
            raise ValueError(f"{NAME} option dt must be a positive number of milliseconds, got {dt!r}")
        out["dt"] = int(dt) if float(dt).is_integer() else float(dt)
    if out["score"] not in SCORES:
        raise ValueError(f"{NAME} option score must be one of {list(SCORES)}, got {out['score']!r}")
    kwargs = out["env_kwargs"]
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise ValueError(
            f"{NAME} option env_kwargs must be a mapping of keyword names to values, got {kwargs!r}"
        )
    if "dt" in kwargs:
        raise ValueError(f"{NAME}: give dt as the option dt, not inside env_kwargs ({dict(kwargs)!r})")
    try:
        kwargs = json.loads(json.dumps(dict(kwargs), sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{NAME} option env_kwargs must hold JSON values (numbers, strings, lists, dicts), got {kwargs!r}: {exc}"
        ) from None
    out["env_kwargs"] = kwargs
    return out


# ----------------------------------------------------------------------------------------------------- neurogym
def _missing(detail: str) -> DataError:
    return DataError(
        f"dataset {NAME!r} needs the optional package neurogym ({detail}); install it with: {INSTALL_HINT}"
    )


def neurogym_version() -> str:
    """The installed neurogym's version, without importing it (a module already imported wins: its
    ``__version__``). Raises ``DataError`` (saying how to install it) when neurogym is not installed."""
    module = sys.modules.get("neurogym", _ABSENT)
    if module is None:  # an import of it was blocked
        raise _missing("it cannot be imported")
    if module is not _ABSENT:
        return str(getattr(module, "__version__", "unknown"))
    try:
        return importlib.metadata.version("neurogym")
    except importlib.metadata.PackageNotFoundError:
        raise _missing("it is not installed") from None


def import_neurogym() -> Any:
    """``import neurogym``, or a one-line ``DataError`` saying how to install it."""
    try:
        return importlib.import_module("neurogym")
    except ImportError as exc:
        raise _missing(f"import failed: {_one_line(exc)}") from None
    except Exception as exc:  # a broken installation (incompatible gymnasium, ...)
        raise _missing(f"import failed: {type(exc).__name__}: {_one_line(exc)}") from None


def _one_line(exc: BaseException | str) -> str:
    return " ".join(str(exc).split())


def _known_tasks(ngym: Any) -> list[str] | None:
    """The task ids neurogym registers (native and collections), or None when it cannot list them."""
    listing = getattr(ngym, "all_envs", None)
    if listing is None:
        try:
            listing = importlib.import_module("neurogym.envs.registration").all_envs
        except (ImportError, AttributeError):
            return None
    try:
        return sorted(listing(collections=True))
    except Exception:  # an older or newer API: the id is then checked by make() alone
        return None


def _make_env(ngym: Any, opts: Mapping[str, Any]) -> Any:
    """The task's trial environment (``env.unwrapped`` of ``neurogym.make``), checked to be usable here."""
    task = opts["task"]
    known = _known_tasks(ngym)
    if known is not None and task not in known:
        import difflib

        close = difflib.get_close_matches(task, known, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise ValueError(
            f"unknown NeuroGym task {task!r} ({NAME} option task); {hint}known tasks: {', '.join(known)}; aliases: "
            + ", ".join(f"{a}={t}" for a, t in sorted(ALIASES.items()))
        )
    kwargs = dict(opts["env_kwargs"])
    if opts["dt"] is not None:
        kwargs["dt"] = opts["dt"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gymnasium's checker: "metadata doesn't include render_modes"
            env = ngym.make(task, **kwargs)
    except Exception as exc:
        raise ValueError(
            f"neurogym cannot make task {task!r} with {kwargs}: {type(exc).__name__}: {_one_line(exc)}; check the "
            f"{NAME} options task, dt and env_kwargs"
        ) from None
    env = getattr(env, "unwrapped", env)
    for attr in ("new_trial", "seed"):
        if not callable(getattr(env, attr, None)):
            raise DataError(
                f"NeuroGym task {task!r} is not a trial-based task (its environment has no {attr}()); only "
                "TrialEnv tasks can be generated as trials"
            )
    n_actions = getattr(getattr(env, "action_space", None), "n", None)
    if isinstance(n_actions, bool) or not isinstance(n_actions, numbers.Integral) or n_actions < 2:
        raise DataError(
            f"NeuroGym task {task!r} has the action space {getattr(env, 'action_space', None)!r}, not a discrete "
            "one of >= 2 actions: its ground truth cannot be a class index"
        )
    shape = tuple(getattr(getattr(env, "observation_space", None), "shape", None) or ())
    if len(shape) != 1 or shape[0] < 1:
        raise DataError(
            f"NeuroGym task {task!r} has observations of shape {shape}; only flat observation vectors (F,) are "
            "supported"
        )
    return env


def _class_names(env: Any, n_classes: int) -> tuple[str, ...]:
    """Names of the actions from the action space's ``name`` map (``{"fixation": 0, "choice": [1, 2]}`` →
    ``("fixation", "choice 1", "choice 2")``); empty when it does not name every action once."""
    mapping = getattr(getattr(env, "action_space", None), "name", None)
    if not isinstance(mapping, Mapping):
        return ()
    names: dict[int, str] = {}
    for key, value in mapping.items():
        values = (
            [value]
            if isinstance(value, numbers.Integral)
            else list(value)
            if hasattr(value, "__iter__")
            else []
        )
        for j, v in enumerate(values):
            if not isinstance(v, numbers.Integral) or int(v) in names:
                return ()
            names[int(v)] = str(key) if len(values) == 1 else f"{key} {j + 1}"
    if sorted(names) != list(range(n_classes)):
        return ()
    return tuple(names[i] for i in range(n_classes))


def _stream_seed(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def _trials(env: Any, opts: Mapping[str, Any], n: int, stream: int) -> dict[str, Any]:
    """``n`` trials of ``env`` seeded for ``stream``: per trial inputs ``(L, F)``, ground truth ``(L,)`` and the
    scored-step mask ``(L,)``; plus the period names seen."""
    task, n_actions = opts["task"], int(env.action_space.n)
    seed = _stream_seed(opts["seed"], stream)
    env.seed(seed)
    # a task drawing from numpy's global generator is seeded too; the caller's global state is restored after
    global_state = np.random.get_state()  # noqa: NPY002 (the legacy global generator is what such tasks use)
    np.random.seed(seed)  # noqa: NPY002
    inputs, targets, scored, periods = [], [], [], set()
    try:
        for i in range(n):
            env.new_trial()
            ob = np.array(env.ob, dtype=np.float32)
            gt = getattr(env, "gt", None)
            if gt is None:
                raise DataError(
                    f"NeuroGym task {task!r} defines no ground truth (env.gt): it is not a supervised task"
                )
            gt = np.array(gt)
            if ob.ndim != 2 or gt.shape != (len(ob),) or not np.issubdtype(gt.dtype, np.integer):
                raise DataError(
                    f"NeuroGym task {task!r}, trial {i}: expected observations (L, F) and integer ground truth "
                    f"(L,), got {ob.shape} and {gt.dtype} {gt.shape}"
                )
            if gt.size and (gt.min() < 0 or gt.max() >= n_actions):
                raise DataError(
                    f"NeuroGym task {task!r}, trial {i}: ground truth {int(gt.max())} outside its {n_actions} "
                    "actions"
                )
            start_ind, end_ind = dict(env.start_ind), dict(env.end_ind)
            periods.update(start_ind)
            mask = np.zeros(len(ob), dtype=bool)
            if opts["score"] == "all":
                mask[:] = True
            else:
                if DECISION_PERIOD not in start_ind or DECISION_PERIOD not in end_ind:
                    raise ValueError(
                        f"NeuroGym task {task!r} has no {DECISION_PERIOD!r} period (its periods: "
                        f"{sorted(start_ind)}); use the {NAME} option score='all'"
                    )
                mask[int(start_ind[DECISION_PERIOD]) : int(end_ind[DECISION_PERIOD])] = True
            inputs.append(ob)
            targets.append(gt.astype(np.int64))
            scored.append(mask)
    finally:
        np.random.set_state(global_state)  # noqa: NPY002
    return {"inputs": inputs, "targets": targets, "scored": scored, "periods": sorted(periods)}


def _generate(opts: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Generate, pad and describe the train and test trials: ``(arrays, meta)``."""
    ngym = import_neurogym()
    logger.info(
        "generating %d + %d trials of NeuroGym task %s (seed %d)",
        opts["n_trials"],
        opts["n_test"],
        opts["task"],
        opts["seed"],
    )
    parts = {}
    env = None
    for part, n, stream in (
        ("train", opts["n_trials"], _TRAIN_STREAM),
        ("test", opts["n_test"], _TEST_STREAM),
    ):
        env = _make_env(ngym, opts)  # a fresh environment per split: its state never carries over
        parts[part] = _trials(env, opts, n, stream)
    assert env is not None
    lengths = np.array([len(ob) for p in parts.values() for ob in p["inputs"]])
    seq_len = opts["seq_len"] if opts["seq_len"] is not None else int(lengths.max())
    arrays: dict[str, np.ndarray] = {}
    truncated, unscored = {}, {}
    for part, p in parts.items():
        x, y, cut = pad_trials(p["inputs"], p["targets"], p["scored"], seq_len)
        arrays[f"{part}_x"], arrays[f"{part}_y"] = x, y
        truncated[part] = int(cut.sum())
        unscored[part] = int((~(y != IGNORE_INDEX).any(axis=1)).sum())
    if any(truncated.values()):
        logger.warning(
            "%s: seq_len=%d cuts %d train and %d test trials (trials have %d to %d steps); %d train and %d test "
            "sequences have no scored step left",
            NAME,
            seq_len,
            truncated["train"],
            truncated["test"],
            int(lengths.min()),
            int(lengths.max()),
            unscored["train"],
            unscored["test"],
        )
    n_classes = int(env.action_space.n)
    meta = {
        "n_classes": n_classes,
        "n_inputs": int(arrays["train_x"].shape[2]),
        "seq_len": int(seq_len),
        "dt": _number(getattr(env, "dt", opts["dt"])),
        "class_names": list(_class_names(env, n_classes)),
        "periods": sorted(set(parts["train"]["periods"]) | set(parts["test"]["periods"])),
        "trial_steps": {
            "min": int(lengths.min()),
            "max": int(lengths.max()),
            "mean": round(float(lengths.mean()), 3),
        },
        "truncated": truncated,
        "unscored_sequences": unscored,
    }
    return arrays, meta


def _number(value: Any) -> int | float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return int(value) if float(value).is_integer() else float(value)


# ----------------------------------------------------------------------------------------------------- cache
def _key_fields(opts: Mapping[str, Any], version: str) -> dict[str, Any]:
    return {"format": _CACHE_FORMAT, "neurogym": version, "options": dict(opts)}


def cache_path(root: Path, opts: Mapping[str, Any], version: str) -> Path:
    """Where the trials of ``opts`` (parsed options) generated by neurogym ``version`` are cached:
    ``<root>/neurogym/<task>-<16 hex digits of the key's sha256>.npz``."""
    key = json.dumps(_key_fields(opts, version), sort_keys=True)
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", opts["task"])
    return root / NAME / f"{safe}-{digest}.npz"


def _cache_problem(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], opts: Mapping[str, Any],
                   version: str) -> str | None:  # fmt: skip
    """Why a cache entry cannot serve ``opts`` (None when it can)."""
    if meta.get("key") != json.loads(json.dumps(_key_fields(opts, version), sort_keys=True)):
        return "it was built for other options or another neurogym version"
    try:
        t, f, k = int(meta["seq_len"]), int(meta["n_inputs"]), int(meta["n_classes"])
    except (KeyError, TypeError, ValueError):
        return "its meta lacks seq_len, n_inputs or n_classes"
    for part, n in (("train", opts["n_trials"]), ("test", opts["n_test"])):
        x, y = arrays[f"{part}_x"], arrays[f"{part}_y"]
        if x.shape != (n, t, f) or x.dtype != np.float32 or y.shape != (n, t) or y.dtype != np.int64:
            return f"{part} arrays are {x.dtype} {x.shape} / {y.dtype} {y.shape}, expected ({n}, {t}, {f}) / ({n}, {t})"
        scored = y[y != IGNORE_INDEX]
        if (scored.size and (scored.min() < 0 or scored.max() >= k)) or not np.isfinite(x).all():
            return f"{part} arrays hold targets outside [0, {k}) or non-finite inputs"
    return None


def _read_or_generate(
    root: Path, opts: Mapping[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, Any], Path]:
    version = neurogym_version()
    path = cache_path(root, opts, version)
    cached = load_npz(path, required=_ARRAYS)
    if cached is not None:
        meta, arrays = cached
        problem = _cache_problem(meta, arrays, opts, version)
        if problem is None:
            logger.info("%s: read cached trials from %s", NAME, path)
            return {k: arrays[k] for k in _ARRAYS}, meta, path
        warn_rebuild(path, problem)
    arrays, meta = _generate(opts)
    meta = {"key": _key_fields(opts, version), **meta}
    try:
        save_npz(path, meta, **arrays)
        logger.info("%s: cached the trials in %s", NAME, path)
    except OSError as exc:  # a read-only data root: the trials are still usable, only not cached
        logger.warning("%s: cannot cache the trials in %s (%s); they will be generated again next time", NAME,
                       path, exc)  # fmt: skip
    return arrays, json.loads(json.dumps(meta)), path


# ----------------------------------------------------------------------------------------------------- loader
def load(root: Path, download: bool, options: Mapping[str, Any]) -> SourceData:
    """The trials of ``options`` (parsed by :func:`parse_options`) from the cache under ``<root>/neurogym/``, or
    generated with neurogym and cached. ``download`` is ignored (nothing is downloaded)."""
    import torch

    opts = dict(options)
    arrays, meta, _ = _read_or_generate(Path(root), opts)
    scoring = (
        f"decision period only (NeuroGym start_ind/end_ind[{DECISION_PERIOD!r}])"
        if opts["score"] == "decision"
        else "every step of the trial, fixation included"
    )
    t_rule = "seq_len" if opts["seq_len"] is not None else "the longest trial"
    cut = meta["truncated"]
    cut_note = (
        f"; {cut['train']} train / {cut['test']} test trials cut to T" if cut["train"] or cut["test"] else ""
    )
    dt = meta["dt"]
    description = (
        f"NeuroGym task {opts['task']} (neurogym {meta['key']['neurogym']}, dt {dt} ms"
        f"{', ' + json.dumps(opts['env_kwargs'], sort_keys=True) if opts['env_kwargs'] else ''}): one trial per "
        f"sequence, T = {meta['seq_len']} steps ({t_rule}; shorter trials padded at the end with zero inputs and "
        f"unscored steps{cut_note}), {meta['n_inputs']} inputs, {meta['n_classes']} actions; per-step targets "
        f"(n, T) scored on the {scoring}, {IGNORE_INDEX} elsewhere; {opts['n_trials']} train / {opts['n_test']} test "
        f"trials generated with seed {opts['seed']} (independent streams)"
    )
    metadata = {
        "task": opts["task"],
        "neurogym_version": meta["key"]["neurogym"],
        "dt_ms": dt,
        "seq_len": meta["seq_len"],
        "score": opts["score"],
        "ignore_index": IGNORE_INDEX,
        "one_trial_per_sequence": True,
        "trial_seed": opts["seed"],
        "env_kwargs": opts["env_kwargs"],
        "periods": meta["periods"],
        "trial_steps": meta["trial_steps"],
        "truncated": cut,
        "unscored_sequences": meta["unscored_sequences"],
    }
    return SourceData(
        train_x=torch.from_numpy(np.ascontiguousarray(arrays["train_x"], dtype=np.float32)),
        train_y=np.ascontiguousarray(arrays["train_y"], dtype=np.int64),
        test_x=torch.from_numpy(np.ascontiguousarray(arrays["test_x"], dtype=np.float32)),
        test_y=np.ascontiguousarray(arrays["test_y"], dtype=np.int64),
        n_classes=int(meta["n_classes"]),
        description=description,
        class_names=tuple(meta["class_names"]),
        metadata=metadata,
    )


DATASETS.register(NAME)(
    DatasetLoader(
        name=NAME,
        summary=(
            "NeuroGym cognitive tasks (optional package neurogym; generated and cached): one trial per sequence, "
            "per-step targets scored on the decision period"
        ),
        load=load,
        parse_options=parse_options,
    )
)
