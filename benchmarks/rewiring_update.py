"""Time and peak memory of ONE rewiring update of a recurrent layer, for every registered growth rule.

The layer: ``CortexRNN`` with N = 10,000 nodes at p = 0.1 by default (~10^7 synapses: Bernoulli edges, no
self-connections), Dale's law on, backend ``csr``, 28 inputs, 10 classes. Every growth rule of
:data:`cortexnet.rewiring.GROWTH` (random, gradient, hebbian, ch3_l3, ch2_l3, ch3_l3n, ch2_l3n) is paired with
magnitude removal at ζ = 0.3, i.e. floor(0.3 · nnz) links removed and as many grown (~3 · 10^6 at the default
size). Each case runs in its own subprocess under a time limit (``--timeout``, 600 s by default, for the whole
child: import, model build, training step and update; a case over it is killed and reported as "over N s"),
with ``torch.set_num_threads(--threads)``.

In the child: build the model and an Adam optimiser, build the
``Rewirer(model, opt, rewiring_config("custom", removal="magnitude", growth=RULE, zeta=0.3, delta_t=1,
end_fraction=1.0), total_steps=1)``, then run one training step (forward, backward, ``opt.step()``) on a random
batch (B = 32, T = 28) — after the Rewirer is built, so that for ``hebbian`` its activity recording sees that
batch — and finally time ``rewirer.step(batch=(x, y))``, which is the one update (the gradient rule's probe
forward/backward on that batch is part of it). Recorded per case: seconds of the update (wall clock around
``rewirer.step``; ``rewirer_s`` is the Rewirer's own per-weight timing), the update's peak memory, synapses
before and after (must be equal: the update conserves the count), links replaced (removed = grown), the
overlap of removed and regrown links, Dale/mask violations after the update (must be 0), and the CPU share
other processes took during the update (the machine may be shared).

Memory: ``update_peak_mb`` = ``ru_maxrss`` after the update minus the RSS right before it. ``ru_maxrss`` is a
high-water mark of the whole process, so by itself a "before/after" difference only shows how far the update
went *above the earlier peak* (model build, connectivity generation, the first training step), not what it
allocated. Hence, right before the update, freed heap is returned to the OS (``malloc_trim``) and the peak is
reset to the current RSS (Linux >= 4.0: ``/proc/self/clear_refs`` "5" resets VmHWM, which ``ru_maxrss``
reads); then ``ru_maxrss`` after minus the RSS before is the update's own high-water mark above the live data
(model, Adam state, gradients of the last step). If the reset is unavailable (``peak_reset`` false), the
figure is ``ru_maxrss`` after minus ``ru_maxrss`` before: only a lower bound (0 when the update stayed under
the setup's peak), flagged in the table with ">=". RSS counts resident pages only: a tensor allocated but never
touched does not count, and glibc may keep freed pages resident, so this is the memory the OS had to provide.

Prints a table and writes ``benchmarks/results/rewiring_update-<UTC>.json`` with the machine::

    python benchmarks/rewiring_update.py                               # N = 10,000, p = 0.1, every rule
    python benchmarks/rewiring_update.py --n 2000 --rules random gradient --timeout 120
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BATCH, STEPS, INPUTS, CLASSES, ZETA = 32, 28, 28, 10, 0.3
#: Table order of the rules (the baselines, then Cannistraci-Hebb); rules registered later follow, sorted.
ORDER = ("random", "gradient", "hebbian", "ch3_l3", "ch2_l3", "ch3_l3n", "ch2_l3n")

CHILD = r"""
import ctypes, json, os, resource, sys, time
from pathlib import Path
import torch
import torch.nn.functional as F
from cortexnet.layers import constraint_violations, sparse_weights
from cortexnet.models import CortexRNNConfig, build_model
from cortexnet.rewiring import Rewirer, rewiring_config

rule, n, p, threads, batch, steps, inputs, classes, zeta, extra = json.loads(sys.argv[1])
torch.set_num_threads(threads)


def rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def maxrss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def busy_s():  # non-idle CPU seconds of the whole machine (/proc/stat)
    f = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")


def own_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


t0 = time.perf_counter()
cfg = CortexRNNConfig(n_nodes=n, p=p, dale=True, backend="csr", exact_edges=False)
model = build_model("cortex_rnn", cfg, n_inputs=inputs, n_classes=classes)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
build_s = time.perf_counter() - t0
rcfg = rewiring_config("custom", removal="magnitude", growth=rule, zeta=zeta, delta_t=1, end_fraction=1.0, **extra)
# Built before the training step: for hebbian its activity recording must see a training forward.
rewirer = Rewirer(model, opt, rcfg, total_steps=1)
g = torch.Generator().manual_seed(0)
x = torch.rand(batch, steps, inputs, generator=g)
y = torch.randint(0, classes, (batch,), generator=g)
t1 = time.perf_counter()
opt.zero_grad(set_to_none=True)
F.cross_entropy(model(x), y).backward()
opt.step()  # also re-imposes Dale's law and the mask
train_step_s = time.perf_counter() - t1
weights = sparse_weights(model)
nnz_before = {k: w.nnz for k, w in weights.items()}
setup_peak_mb = maxrss_mb()
# hebbian: the samples the Rewirer's activity recording holds (0 would make the rule a random fill).
activity_samples = [int(e.recording.accumulator.samples) for e in rewirer.weights if e.recording is not None]

try:
    ctypes.CDLL("libc.so.6").malloc_trim(0)
except (OSError, AttributeError):
    pass
try:
    Path("/proc/self/clear_refs").write_text("5")
    peak_reset = True
except OSError:
    peak_reset = False
rss_before, maxrss_before = rss_mb(), maxrss_mb()
busy0, own0 = busy_s(), own_s()
t2 = time.perf_counter()
records = rewirer.step(batch=(x, y))
seconds = time.perf_counter() - t2
maxrss_after = maxrss_mb()
others = max(0.0, busy_s() - busy0 - (own_s() - own0))
rss_after = rss_mb()

weights = sparse_weights(model)
nnz_after = {k: w.nnz for k, w in weights.items()}
update_peak = maxrss_after - (rss_before if peak_reset else maxrss_before)
print(json.dumps({
    "seconds": round(seconds, 3),
    "rewirer_s": round(sum(r["seconds"] for r in records), 3),
    "update_peak_mb": round(max(update_peak, 0.0), 1),
    "peak_reset": peak_reset,
    "rss_before_mb": round(rss_before, 1), "rss_after_mb": round(rss_after, 1),
    "maxrss_before_mb": round(maxrss_before, 1), "maxrss_after_mb": round(maxrss_after, 1),
    "setup_peak_mb": round(setup_peak_mb, 1),
    "synapses_before": sum(nnz_before.values()), "synapses_after": sum(nnz_after.values()),
    "removed": sum(r["removed"] for r in records), "grown": sum(r["grown"] for r in records),
    "overlap": [round(r["overlap"], 4) for r in records],
    "weights": [r["weight"] for r in records],
    "violations": constraint_violations(model)["total"],
    "activity_samples": activity_samples,
    "others_cpu_share": round(others / (seconds * (os.cpu_count() or 1)), 3) if seconds > 0 else 0.0,
    "build_s": round(build_s, 2), "train_step_s": round(train_step_s, 2),
}))
"""


def run_case(rule: str, n: int, p: float, threads: int, timeout: float, extra: dict | None = None) -> dict:
    job = json.dumps([rule, n, p, threads, BATCH, STEPS, INPUTS, CLASSES, ZETA, extra or {}])
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, job], capture_output=True, text=True,
                              timeout=timeout, env=env, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:g} s", "wall_s": round(time.perf_counter() - t0, 1)}
    wall = round(time.perf_counter() - t0, 1)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or "").strip().splitlines()
        why = "killed (out of memory?)" if done.returncode in (-9, 137) else f"failed rc={done.returncode}"
        return {"error": f"{why}: {(tail or ['?'])[-1]}", "traceback": tail[-30:], "wall_s": wall}
    out = json.loads(lines[-1])
    out["wall_s"] = wall
    if out["synapses_before"] != out["synapses_after"]:
        out["error"] = f"synapse count changed: {out['synapses_before']} -> {out['synapses_after']}"
    elif out["removed"] != out["grown"]:
        out["error"] = f"removed {out['removed']} but grew {out['grown']}"
    elif out["activity_samples"] and 0 in out["activity_samples"]:
        out["error"] = "no activity recorded before the update (hebbian would grow at random)"
    elif out["violations"]:
        out["error"] = f"{out['violations']} Dale/mask violations after the update"
    return out


def main(argv: list[str] | None = None) -> int:
    from cortexnet.rewiring import GROWTH

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="recurrent nodes N")
    ap.add_argument("--p", type=float, default=0.1, help="connection probability")
    ap.add_argument("--rules", nargs="+", default=None, choices=GROWTH.names(), metavar="RULE",
                    help=f"growth rules (default: all: {' '.join(GROWTH.names())})")  # fmt: skip
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per case (whole subprocess)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads in each case")
    ap.add_argument("--hebbian-candidates", type=int, default=None,
                    help="hebbian: track the active links plus this many free positions (RewiringConfig)")  # fmt: skip
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    sys.path.insert(0, str(HERE))
    from recurrent_step import machine

    rules = args.rules or sorted(
        GROWTH.names(), key=lambda r: (ORDER.index(r) if r in ORDER else len(ORDER), r)
    )
    print(f"one rewiring update: CortexRNN N = {args.n:,}, p = {args.p:g}, Dale, csr, magnitude removal, "
          f"zeta = {ZETA}, B = {BATCH}, T = {STEPS}, {args.threads} threads; load {os.getloadavg()}", flush=True)  # fmt: skip
    print(f"{'growth':<9} {'update s':>9} {'peak MB':>9} {'synapses':>12} {'replaced':>10} {'overlap':>8} "
          f"{'viol':>5} {'others':>7}", flush=True)  # fmt: skip
    load_start = os.getloadavg()
    rows = []
    for rule in rules:
        extra = {"hebbian_candidates": args.hebbian_candidates} if args.hebbian_candidates else {}
        row = {"growth": rule, "removal": "magnitude", "loadavg": os.getloadavg()[0], **extra}
        row.update(run_case(rule, args.n, args.p, args.threads, args.timeout, extra))
        rows.append(row)
        _print_row(row)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    result = {
        "benchmark": "rewiring_update",
        "created": stamp,
        "machine": machine(),
        "config": {
            "n": args.n,
            "p": args.p,
            "dale": True,
            "backend": "csr",
            "exact_edges": False,
            "batch": BATCH,
            "steps": STEPS,
            "inputs": INPUTS,
            "classes": CLASSES,
            "removal": "magnitude",
            "zeta": ZETA,
            "threads": args.threads,
            "timeout_s": args.timeout,
            "hebbian_candidates": args.hebbian_candidates,
        },
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "rows": rows,
    }
    path = args.out or HERE / "results" / f"rewiring_update-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


def _print_row(r: dict) -> None:
    if "synapses_before" not in r:
        print(f"{r['growth']:<9} {r['error']}", flush=True)
        return
    peak = f"{'' if r['peak_reset'] else '>='}{r['update_peak_mb']:,.0f}"
    note = f"  ERROR: {r['error']}" if "error" in r else ""
    print(f"{r['growth']:<9} {r['seconds']:>9.2f} {peak:>9} {r['synapses_before']:>12,} {r['removed']:>10,} "
          f"{max(r['overlap'], default=0):>8.3f} {r['violations']:>5} {100 * r['others_cpu_share']:>6.0f}%{note}",
          flush=True)  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
