"""Probe trained networks: how do they represent their inputs? (Fruengel & Oberlaender 2025, Fig. 5, 6D)

    python -m cortexnet.experiments.representations --checkpoint runs/dale/<run>/members/p0.1-inh0.115-seed0/checkpoint.pt \\
        --checkpoint runs/dale/<run>/members/p1-inh0.115-seed0/checkpoint.pt
    python -m cortexnet.experiments.representations --run runs/recurrent_vs_feedforward/<run>

``--run`` probes every member of an experiment's run folder (``<run>/members/<label>/checkpoint.pt``), in the
run's member order, each labelled by its member folder name; ``--checkpoint`` and ``--run`` may be combined
(the checkpoints first, then the runs' members, in the order given).

Loads each checkpoint (the dataset comes from the checkpoint's saved configuration: name, dataset options,
n_per_class, val_fraction and split seed), measures activation sparsity, mutual information between random
node pairs, Pearson correlations, dropout robustness and E/I balance (for a trained network both as trained
and as initialised: the saved seeds rebuild the initial network exactly), compares the networks (two-sample KS
tests against the first), and writes ``runs/representations/<timestamp>-<hash>/`` with summary.json and one
PNG (and SVG) per measure. E/I identities are looked up on whichever layer carries them (the recurrent layer of
CortexRNN, the sparse layer of the Dale feed-forward control); networks without them (G2GNet, non-Dale) get
"not applicable" for the E/I measures.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cortexnet.analysis import (
    EILayer,
    activation_sparsity,
    dropout_robustness,
    ei_balance,
    ei_layer,
    hidden_activations,
    ks_compare,
    pairwise_correlations,
    pairwise_mutual_information,
)
from cortexnet.analysis.plots import (
    display_name,
    format_p,
    plot_curves,
    plot_histogram_panels,
    plot_histograms,
)
from cortexnet.config import check_fields
from cortexnet.data import load_dataset
from cortexnet.experiments.common import UsageError, build_parser, field, parse_config, run_cli
from cortexnet.models import build_model
from cortexnet.training import (
    CheckpointError,
    evaluate,
    model_from_checkpoint,
    resolve_device,
)
from cortexnet.training.fit import CHECKPOINT_NAME
from cortexnet.training.runs import MEMBERS_NAME, METRICS_NAME, RunFolder, check_output_writable

ANALYSES = ("sparsity", "mi", "correlations", "dropout", "ei_balance")

#: The paper's values (REFERENCE.md §1): MNIST, N = 10,000, after one epoch, sparse p = 0.1 vs dense p = 1.0.
PAPER = {
    "source": "Fruengel & Oberlaender 2025, Fig. 5 and 6D (MNIST, N = 10,000, after 1 epoch)",
    "nodes_with_nonzero_output": {"sparse": "11.2 ± 1.5 %", "dense": "3.0 ± 1.0 %"},
    "mutual_information_10000_pairs": {"sparse": "0.019 ± 0.065", "dense": "0.005 ± 0.029", "ks_p": 1.03e-44},
    "dropout_50_percent": {"sparse": "91.1 → 90.9 %", "dense": "81.4 → 76.3 %"},
    "dropout_90_percent_loss": {"sparse": "3.1 points", "dense": "33.3 points"},
    "correlations_at_init": "dense Dale networks: highly correlated hidden activations; sparse: not",
}


@dataclass(frozen=True)
class ProbeConfig:
    """Options of ``python -m cortexnet.experiments.representations``."""

    checkpoint: tuple[str, ...] = field((), "checkpoint files to probe (repeat the option for several)")
    run: tuple[str, ...] = field(
        (),
        "experiment run folders: probe every member's checkpoint (<run>/members/<label>/checkpoint.pt), in the "
        "run's member order, after the --checkpoint files (repeat the option for several)",
    )
    label: tuple[str, ...] = field(
        (),
        "a name per probed network, --checkpoint files first, then the --run members (default: its member "
        "folder name)",
    )
    analyses: tuple[str, ...] = field(ANALYSES, f"measures to run, any of {', '.join(ANALYSES)}")
    at_init: bool = field(
        False, "probe each network as initialised (rebuilt from its saved seeds), not trained"
    )
    split: str = field("test", "dataset split to probe: test, val or train")
    strict: bool = field(
        False,
        "refuse a checkpoint whose weights break their mask or Dale's law (default: set them to zero and warn)",
    )
    max_samples: int | None = field(None, "use at most this many inputs (seeded subsample)")
    mi_pairs: int = field(10_000, "random node pairs for mutual information (paper: 10,000)")
    corr_pairs: int = field(10_000, "random node pairs for Pearson correlations")
    dropout_qs: tuple[float, ...] = field(
        tuple(round(0.1 * k, 1) for k in range(10)), "dropout probabilities"
    )
    dropout_draws: int = field(5, "independent dropout draws per probability")
    threshold: float = field(
        0.0,
        "|activation| above which a node counts as active (0 for ReLU; use a small positive value for tanh)",
    )
    n_jobs: int | None = field(
        None,
        "worker processes for mutual information (-1: every available core; 1: serial; none: every core when "
        "the work is large, e.g. thousands of inputs, else serial)",
    )
    seed: int = field(0, "seed of pair sampling, subsampling and dropout draws")
    data_root: str | None = field(None, "data folder (default: $CORTEXNET_DATA, ./datasets, user cache)")
    device: str = field("auto", "auto, cpu, cuda or cuda:K")
    batch_size: int = field(500, "inputs per forward pass")
    out: str = field("runs", "results root; written to <out>/representations/<timestamp>-<hash>/")

    def validate(self) -> ProbeConfig:
        """Check every value before any work; raise ``ValueError`` naming the value, the range and the fix."""
        check_fields(self)  # types, integral ints, finite floats: before any range check
        if not self.checkpoint and not self.run:
            raise ValueError("give at least one --checkpoint FILE or --run RUN_DIR")
        n_members = sum(len(run_members(r)) for r in self.run)  # every run folder checked here
        if self.label and len(self.label) != len(self.checkpoint) + n_members:
            if not self.run:
                raise ValueError(
                    f"--label needs one name per checkpoint ({len(self.checkpoint)}), got {len(self.label)}"
                )
            raise ValueError(
                f"--label needs one name per probed network ({len(self.checkpoint) + n_members}: "
                f"{len(self.checkpoint)} --checkpoint, {n_members} members of --run), got {len(self.label)}"
            )
        bad = [a for a in self.analyses if a not in ANALYSES]
        if bad:
            raise ValueError(f"unknown --analyses {bad}; choose from {', '.join(ANALYSES)}")
        if self.split not in ("test", "val", "train"):
            raise ValueError(f"--split must be test, val or train, got {self.split!r}")
        for name, v in (("--mi-pairs", self.mi_pairs), ("--corr-pairs", self.corr_pairs),
                        ("--dropout-draws", self.dropout_draws), ("--batch-size", self.batch_size)):  # fmt: skip
            if v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        if self.n_jobs == 0:
            raise ValueError("--n-jobs must be >= 1 (that many processes) or negative (every core), got 0")
        if self.max_samples is not None and self.max_samples < 2:
            raise ValueError(f"--max-samples must be >= 2, got {self.max_samples}")
        for q in self.dropout_qs:
            if not 0.0 <= q <= 1.0:
                raise ValueError(f"--dropout-qs must be in [0, 1], got {q}")
        resolve_device(self.device)
        check_output_writable(self.out)
        return self


def run_members(run: str) -> list[tuple[str, Path]]:
    """(member name, checkpoint path) of every member of the experiment run folder ``run``, sorted by name.

    Raises ``ValueError`` (one line, with the fix) when ``run`` is not a folder, has no members folder or no
    member checkpoints, or a member has no checkpoint (it did not finish: the run is to be resumed first)."""
    path = Path(run)
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise ValueError(f"--run {run} {what}; pass the run folder written by an experiment")
    members = path / MEMBERS_NAME
    if not members.is_dir():
        raise ValueError(
            f"--run {run} has no {MEMBERS_NAME} folder ({members}); pass the run folder written by an "
            "experiment, or train it first"
        )
    names = sorted(p.name for p in members.iterdir() if p.is_dir() and not p.name.startswith("."))
    found = [(name, members / name / CHECKPOINT_NAME) for name in names]
    if not any(ckpt.is_file() for _, ckpt in found):
        raise ValueError(
            f"--run {run} has no member checkpoints in {members}; train it first (or finish an interrupted "
            f"run with --resume {run})"
        )
    unfinished = [name for name, ckpt in found if not ckpt.is_file()]
    if unfinished:
        more = f" (and {len(unfinished) - 1} more)" if len(unfinished) > 1 else ""
        raise ValueError(
            f"--run {run}: member {unfinished[0]}{more} has no {CHECKPOINT_NAME} (it did not finish); finish "
            f"the run with --resume {run}, then probe it"
        )
    return found


def _run_order(run: str, members: list[tuple[str, dict[str, Any] | None]]) -> list[int]:
    """The positions of ``members`` ((name, tags saved in its checkpoint), sorted by name) in the run's member
    order: the order their tags first appear in the run's metrics.jsonl (written member after member); members
    not found there (no metrics, no tags) follow, by name."""
    keys = sorted({k for _, tags in members if isinstance(tags, dict) for k in tags})

    def key(tags: dict[str, Any]) -> str:
        return json.dumps({k: tags.get(k) for k in keys}, sort_keys=True, default=str)

    first: dict[str, int] = {}
    try:
        with open(Path(run) / METRICS_NAME) as fh:
            for i, line in enumerate(fh):
                record = json.loads(line)
                if isinstance(record, dict):
                    first.setdefault(key(record), i)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        pass  # no or damaged metrics (records read so far still count): the rest by name
    big = float("inf")
    rank = [first.get(key(tags), big) if isinstance(tags, dict) and keys else big for _, tags in members]
    return sorted(range(len(members)), key=lambda i: (rank[i], members[i][0]))


def _load(path: str, at_init: bool, strict: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """The trained network of a checkpoint (or, with ``at_init``, the same network as initialised); any
    problem with the file or its saved configuration is a one-line usage error (exit status 2). Masks and
    Dale's law are re-imposed on load (``strict``: refused instead)."""
    try:
        model, ckpt = model_from_checkpoint(path, strict=strict)
        if at_init:
            model = _initial_model(ckpt["meta"])
    except (CheckpointError, KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"cannot probe {path}: {exc}") from exc
    # A network with NaN/inf weights gives NaN activations, and every measure of them would be silently wrong.
    bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise UsageError(
            f"cannot probe {path}: non-finite (NaN/inf) weights in {', '.join(bad)}; probe a checkpoint "
            "written before training diverged"
        )
    return model, ckpt


def _load_all(config: ProbeConfig) -> tuple[list[str], list[str], list[tuple[nn.Module, dict[str, Any]]]]:
    """The networks to probe, in order (the --checkpoint files, then each --run's members in the run's member
    order): their checkpoint paths, default labels (member folder names) and loaded (model, checkpoint)."""
    paths = list(config.checkpoint)
    names = [Path(c).parent.name or Path(c).stem for c in config.checkpoint]
    loaded = [_load(c, config.at_init, config.strict) for c in config.checkpoint]
    for run in config.run:
        try:
            members = run_members(run)  # checked by validate(); again, in case the folder changed since
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        group = [_load(str(ckpt), config.at_init, config.strict) for _, ckpt in members]
        tags = [(ckpt.get("meta") or {}).get("tags") for _, ckpt in group]
        for i in _run_order(run, [(name, t) for (name, _), t in zip(members, tags, strict=True)]):
            paths.append(str(members[i][1]))
            names.append(members[i][0])
            loaded.append(group[i])
    return paths, names, loaded


def _initial_model(meta: dict[str, Any]) -> nn.Module:
    """The network as it was before training: rebuilt from the saved configuration, whose seeds fix the
    connectivity, the E/I identities and every initial weight."""
    return build_model(meta["model"], meta["model_config"], meta["n_inputs"], meta["n_classes"]).eval()


def _dataset(meta: dict[str, Any], split: str, root: str | None, cache: dict):
    """The split of the data the network was trained on, loaded with the saved dataset specification (as
    written by :func:`cortexnet.experiments.common.load_run_data`)."""
    spec = meta.get("dataset") or {}
    if "name" not in spec:
        raise UsageError(
            "the checkpoint does not record its dataset; it was not written by a cortexnet experiment"
        )
    options = dict(spec.get("options") or {})
    key = (spec["name"], spec.get("val_fraction", 0.0), spec.get("n_per_class"), spec.get("seed", 0),
           json.dumps(options, sort_keys=True, default=str))  # fmt: skip
    if key not in cache:
        try:
            cache[key] = load_dataset(spec["name"], root=root, val_fraction=key[1], n_per_class=key[2],
                                      seed=key[3], options=options or None)  # fmt: skip
        except (ValueError, TypeError) as exc:  # bad saved options; DataError (missing files) passes on
            raise UsageError(
                f"cannot load the checkpoint's dataset {spec['name']!r} {options}: {exc}"
            ) from exc
    ds = getattr(cache[key], split)
    if ds is None:
        raise UsageError(
            f"the checkpoint's dataset has no {split} split (val_fraction was 0); use --split test"
        )
    return ds


def _identities(info: EILayer | None) -> dict[str, Any] | None:
    if info is None:
        return None
    n_inh = int(info.inhibitory.sum())
    return {"layer": info.name, "n_excitatory": len(info.inhibitory) - n_inh, "n_inhibitory": n_inh,
            "label_probed_nodes": info.labels_representation}  # fmt: skip


def probe_network(
    model: nn.Module, ds, config: ProbeConfig, device, *, initial: nn.Module | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """All chosen measures for one network: (summary numbers, raw arrays for the figures).

    ``initial``: the same network as initialised; E/I balance is then reported for both (``after_training``
    and ``at_init``). Without it, ``model`` is taken to be the network as initialised when ``config.at_init``.
    """
    model.to(device)
    out: dict[str, Any] = {
        "accuracy": evaluate(model, ds, batch_size=config.batch_size, device=device)["accuracy"]
    }
    raw: dict[str, Any] = {}
    needs_h = {"sparsity", "mi", "correlations"} & set(config.analyses)
    if needs_h:
        acts = hidden_activations(model, ds, max_samples=config.max_samples, batch_size=config.batch_size,
                                  seed=config.seed, device=device)  # fmt: skip
        h = acts.values
        bad = int((~torch.isfinite(h)).reshape(len(h), -1).any(1).sum())
        if bad:  # finite weights, exploding activity: every measure of it would be silently wrong
            raise UsageError(
                f"cannot probe {config.split} data: the network's hidden activations are non-finite (NaN/inf) on "
                f"{bad} of {len(h)} inputs (its activity diverges); probe a checkpoint written before it did"
            )
        out["inputs_used"] = len(h)
        out["inputs_subsampled"] = acts.subsampled
    info = ei_layer(model)
    out["ei_identities"] = _identities(info)
    if "sparsity" in config.analyses:
        labels_h = info is not None and info.labels_representation and len(info.inhibitory) == h.shape[1]
        activation = getattr(getattr(model, "config", None), "activation", None)
        s = activation_sparsity(h, inhibitory=info.inhibitory if labels_h else None, threshold=config.threshold,
                                seed=config.seed, activation=activation)  # fmt: skip
        if info is None:
            per_pop: Any = "not applicable: the network has no excitatory/inhibitory identities"
        elif not labels_h:
            per_pop = (f"not applicable: the E/I identities belong to the presynaptic nodes of {info.name!r}, "
                       "not to the probed nodes (what the readout sees)")  # fmt: skip
        else:
            per_pop = s.per_population
        mags = s.magnitudes
        out["sparsity"] = {"active_fraction_mean": s.mean, "active_fraction_sd": s.sd, "ever_active": s.ever_active,
                           "nonzero_magnitude_mean": float(mags.mean()) if mags.size else None,
                           "nonzero_magnitude_median": float(np.median(mags)) if mags.size else None,
                           "magnitude": "|h| of active nodes", "activation": activation,
                           "threshold": config.threshold, "per_population": per_pop, "notes": list(s.notes)}  # fmt: skip
        raw["active_fraction"], raw["magnitudes"] = s.active_fraction, mags
    if "mi" in config.analyses:
        mi = pairwise_mutual_information(h, n_pairs=config.mi_pairs, seed=config.seed, n_jobs=config.n_jobs)
        out["mutual_information"] = {"mean": mi.mean, "sd": mi.sd, "pairs": len(mi.values),
                                     "constant_nodes": mi.n_constant_nodes,
                                     "pairs_with_constant_node": mi.n_pairs_with_constant,
                                     "constant_policy": mi.constant_policy, "unit": "nats"}  # fmt: skip
        raw["mi"] = mi.values
    if "correlations" in config.analyses:
        r = pairwise_correlations(h, n_pairs=config.corr_pairs, seed=config.seed)
        out["correlations"] = {"mean": r.mean, "sd": r.sd, "mean_abs": float(np.abs(r.values).mean()) if r.values.size else None,
                               "pairs": len(r.values), "constant_nodes": r.n_constant_nodes,
                               "pairs_skipped_constant": r.n_pairs_with_constant}  # fmt: skip
        raw["r"] = r.values
    if "dropout" in config.analyses:
        c = dropout_robustness(model, ds, qs=config.dropout_qs, n_draws=config.dropout_draws, seed=config.seed,
                               batch_size=config.batch_size, device=device)  # fmt: skip
        out["dropout"] = {"q": c.qs.tolist(), "accuracy_mean": c.mean.tolist(), "accuracy_sd": c.sd.tolist(),
                          "draws": config.dropout_draws}  # fmt: skip
        raw["dropout"] = c
    if "ei_balance" in config.analyses:
        if info is None:
            out["ei_balance"] = "not applicable: network has no excitatory/inhibitory identities"
        else:
            nets = {"at_init": model} if initial is None and config.at_init else {"after_training": model}
            if initial is not None:
                nets["at_init"] = initial.to(device)
            out["ei_balance"], raw["ei_net"] = {}, {}
            for when, net in nets.items():
                bal = ei_balance(
                    net, ds, max_samples=config.max_samples or 1000, seed=config.seed, device=device
                )
                out["ei_balance"][when] = bal.summary()
                raw["ei_net"][when] = bal.func_net
    return out, raw


def main(argv: list[str] | None = None) -> int:
    """Probe the checkpoints and the runs' members; returns the exit status (2 for bad options or unusable
    checkpoints)."""
    parser = build_parser(ProbeConfig, prog="python -m cortexnet.experiments.representations",
                          description=__doc__.split("\n")[0])  # fmt: skip
    try:
        config = parse_config(ProbeConfig, parser, argv)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    device = resolve_device(config.device)
    paths, names, loaded = _load_all(config)  # all checked before any work
    labels = list(config.label) or names
    if len(set(labels)) != len(labels):
        labels = [f"{i}:{lab}" for i, lab in enumerate(labels)]
    if config.at_init:
        labels = [f"{lab} @init" for lab in labels]
    cache: dict = {}
    datasets = [_dataset(ckpt["meta"], config.split, config.data_root, cache) for _, ckpt in loaded]
    folder = RunFolder.create(config.out, "representations", dataclasses.asdict(config))
    print(f"representations: writing {folder.path}")
    networks, raws = [], []
    for label, path, (model, ckpt), ds in zip(labels, paths, loaded, datasets, strict=True):
        initial = None
        if "ei_balance" in config.analyses and not config.at_init and ei_layer(model) is not None:
            initial = _initial_model(ckpt["meta"])  # same config _load built: cannot fail
        numbers, raw = probe_network(model, ds, config, device, initial=initial)
        describe = model.describe() if hasattr(model, "describe") else {}
        trained = ckpt.get("train_state", {}).get("epoch")
        networks.append({"label": label, "checkpoint": str(path), "epochs_trained": 0 if config.at_init else trained,
                         "model": describe, **numbers})  # fmt: skip
        raws.append(raw)
    comparisons = []
    for i in range(1, len(networks)):
        comp: dict[str, Any] = {"a": labels[0], "b": labels[i]}
        for key, name in (("mi", "mutual_information_ks"), ("r", "correlations_ks")):
            if key in raws[0] and key in raws[i] and raws[0][key].size and raws[i][key].size:
                ks = ks_compare(raws[0][key], raws[i][key])
                comp[name] = {"statistic": ks.statistic, "pvalue": ks.pvalue}
        comparisons.append(comp)
    folder.write_summary({"experiment": "representations", "split": config.split, "networks": networks,
                          "comparisons": comparisons, "paper": PAPER})  # fmt: skip
    classes = {ckpt["meta"].get("n_classes") for _, ckpt in loaded}
    chance = 1.0 / classes.pop() if len(classes) == 1 and None not in classes else None
    _figures(folder.path, labels, raws, comparisons, chance=chance, draws=config.dropout_draws)
    _print_table(networks, comparisons)
    return 0


def _figures(path: Path, labels: list[str], raws: list[dict], comparisons: list[dict], *,
             chance: float | None = None, draws: int | None = None) -> None:  # fmt: skip
    """One figure per measure (PNG + SVG). ``chance``: 1 / classes, drawn on the dropout curves (the accuracy of
    uniform guessing; None when the networks' class counts differ); ``draws``: dropout draws per point (the
    band's SD is over them)."""

    def pick(key):
        return {lab: r[key] for lab, r in zip(labels, raws, strict=True) if key in r}

    def ks_note(name):
        done = [c for c in comparisons if name in c]
        if len(done) == 1:
            return f"two-sample KS test: {format_p(done[0][name]['pvalue'])}"
        return "\n".join(f"KS test, {display_name(c['b'])} vs {display_name(c['a'])}: "
                         f"{format_p(c[name]['pvalue'])}" for c in done)  # fmt: skip

    if pick("active_fraction"):
        plot_histograms(path / "activation_sparsity.png", {k: 100 * v for k, v in pick("active_fraction").items()},
                        xlabel="nodes with non-zero output per input (%)", title="Activation sparsity")  # fmt: skip
        plot_histograms(path / "activation_magnitudes.png", pick("magnitudes"), xlabel="|activation| of active nodes",
                        title="Magnitudes of active nodes' outputs", log_y=True)  # fmt: skip
    if pick("mi"):
        plot_histograms(path / "mutual_information.png", pick("mi"), xlabel="mutual information (nats)",
                        title="MI between random node pairs", log_y=True, note=ks_note("mutual_information_ks"))  # fmt: skip
    if pick("r"):
        plot_histograms(path / "correlations.png", pick("r"), xlabel="Pearson r", bins=np.linspace(-1, 1, 41),
                        title="Correlations between node pairs", note=ks_note("correlations_ks"))  # fmt: skip
    if pick("dropout"):
        curves = {
            lab: (list(100 * c.qs), list(c.mean), list(c.sd), draws) for lab, c in pick("dropout").items()
        }
        plot_curves(path / "dropout.png", curves, xlabel="nodes dropped at test time (%)",
                    ylabel="test accuracy (%)", title="Dropout robustness", scale=100.0, chance=chance,
                    band_over="dropout draws")  # fmt: skip
    if pick("ei_net"):
        panels: dict[str, dict[str, np.ndarray]] = {}
        for when, name in (("at_init", "at initialisation"), ("after_training", "after training")):
            series = {lab: d[when] for lab, d in pick("ei_net").items() if when in d}
            if series:
                panels[name] = series
        plot_histogram_panels(path / "ei_balance.png", panels, xlabel="net input per node from E and I nodes (E + I)",
                              title="E/I balance")  # fmt: skip


def _print_table(networks: list[dict], comparisons: list[dict]) -> None:
    head = (
        f"{'network':<28} {'acc (%)':>8} {'active (%)':>14} {'MI (nats)':>16} {'|r|':>6} {'drop50 (%)':>10}"
    )
    print(head)
    print("-" * len(head))
    for n in networks:
        sp = n.get("sparsity", {})
        mi = n.get("mutual_information", {})
        co = n.get("correlations", {})
        dr = n.get("dropout", {})
        act = f"{100 * sp['active_fraction_mean']:.1f} ± {100 * sp['active_fraction_sd']:.1f}" if sp else "-"
        mis = f"{mi['mean']:.3f} ± {mi['sd']:.3f}" if mi else "-"
        cor = f"{co['mean_abs']:.2f}" if co and co.get("mean_abs") is not None else "-"
        d50 = "-"
        if dr and 0.5 in dr["q"]:
            d50 = f"{100 * dr['accuracy_mean'][dr['q'].index(0.5)]:.1f}"
        print(f"{n['label'][:28]:<28} {100 * n['accuracy']:>8.1f} {act:>14} {mis:>16} {cor:>6} {d50:>10}")
    for c in comparisons:
        parts = [f"{k}: p = {v['pvalue']:.3g}" for k, v in c.items() if isinstance(v, dict)]
        print(f"{c['a']} vs {c['b']}: " + "; ".join(parts))


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
