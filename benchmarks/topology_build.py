"""Build time and peak memory of every registered topology generator, each case in its own subprocess.

Cases (the issue's targets): a recurrent layer of N = 20,000 nodes at p = 0.1 (4e7 synapses; the result alone is
~320 MB of int64 column indices), and a 1568 x 1568 feed-forward layer at 99 % sparsity (p = 0.01, the DNM
MLP's hidden layers). Peak memory is the child's peak RSS (``ru_maxrss``) minus its RSS after importing
cortexnet and making the data a data-wired topology takes (csti's input sample, snip's dense scores), so it is
what the build itself allocates. Prints a table and writes ``results/topology_build-<UTC>.json``
with the machine::

    python benchmarks/topology_build.py                                # every topology, both cases
    python benchmarks/topology_build.py --topologies er bsw --n 20000 --p 0.1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, resource, sys, time
import torch
from cortexnet.connectivity import LayerSpec, data_params, make_connectivity

name, n_out, n_in, recurrent, p, params = json.loads(sys.argv[1])
torch.set_num_threads(2)
spec = LayerSpec(n_out, n_in, recurrent=recurrent, density=p)
# Data-wired topologies get their data first, so the peak below is what the build allocates beyond it.
if "activity" in data_params(name):  # csti: 1,000 samples of <= 784 features
    params["activity"] = torch.rand(1000, min(n_in, 784), generator=torch.Generator().manual_seed(1))
if "saliency" in data_params(name):  # snip: dense float32 scores of every position (N = 20,000: 1.6 GB)
    params["saliency"] = torch.rand(n_out, n_in, generator=torch.Generator().manual_seed(1))
base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
conn = make_connectivity(name, spec, generator=torch.Generator().manual_seed(0), **params)
seconds = time.perf_counter() - t0
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": round(seconds, 2), "build_peak_mb": round((peak_kb - base_kb) / 1024, 1),
                  "result_mb": round((conn.col.numel() + conn.crow.numel()) * 8 / 2**20, 1),
                  "nnz": conn.nnz, "density": conn.density()}))
"""

#: Parameters a generator needs beyond the layer description (G2G: p' below the intra-pathway p).
EXTRA = {"g2g": {"p_inter": None}}


def cases(n: int, p: float) -> list[tuple[str, int, int, bool, float]]:
    return [
        (f"recurrent N = {n:,}, p = {p:g}", n, n, True, p),
        ("feed-forward 1568 x 1568, p = 0.01", 1568, 1568, False, 0.01),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--topologies", nargs="+", default=None, help="default: every registered one but 'full'")
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--p", type=float, default=0.1)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per case")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    sys.path.insert(0, str(HERE))
    from recurrent_step import machine

    from cortexnet.connectivity import TOPOLOGIES

    # "full" at N = 20,000 is 4e8 synapses (3.2 GB of indices): not a sparse initialiser.
    names = args.topologies or [t for t in TOPOLOGIES.names() if t != "full"]
    rows = []
    for label, n_out, n_in, recurrent, p in cases(args.n, args.p):
        for name in names:
            params = {k: (p / 2 if v is None else v) for k, v in EXTRA.get(name, {}).items()}
            job = json.dumps([name, n_out, n_in, recurrent, p, params])
            try:
                done = subprocess.run([sys.executable, "-c", CHILD, job], capture_output=True, text=True,
                                      timeout=args.timeout, check=False)  # fmt: skip
                out = (
                    json.loads(done.stdout.strip().splitlines()[-1])
                    if done.returncode == 0
                    else {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
                )
            except subprocess.TimeoutExpired:
                out = {"error": f"over {args.timeout:g} s"}
            rows.append({"case": label, "topology": name, "params": params, **out})
            _print_row(rows[-1])
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    result = {"benchmark": "topology_build", "created": stamp, "machine": machine(), "rows": rows}
    path = args.out or HERE / "results" / f"topology_build-{stamp}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


def _print_row(r: dict) -> None:
    if "error" in r:
        print(f"{r['case']:<36} {r['topology']:<10} error: {r['error']}", flush=True)
        return
    print(f"{r['case']:<36} {r['topology']:<10} {r['seconds']:>8.2f} s {r['build_peak_mb']:>9,.0f} MB peak "
          f"{r['result_mb']:>7,.1f} MB result  nnz {r['nnz']:>11,}  density {r['density']:.4f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
