"""Measure where ``csr`` stops beating ``masked_dense`` (the crossovers ``auto`` uses).

For each (N, B) the training step of the recurrent layer (forward+backward over 28 steps plus the fused Adam
step, as in ``recurrent_step.py``) is timed for ``masked_dense`` (its cost does not depend on p) and for
``csr`` at increasing densities; the crossover is where the csr time crosses the dense time, interpolated
linearly in p between the two measured densities around it. Each measurement runs in its own subprocess.
The results (and a table to paste into ``cortexnet/sparse/auto.py``) go to ``benchmarks/results/``.

    python benchmarks/crossover.py                 # ~10 min on 2 cores
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from recurrent_step import machine, run_subprocess, wait_for_quiet  # noqa: E402


def step_ms(rec: dict) -> float | None:
    if rec.get("status") != "ok":
        return None
    return rec["ms"] + (rec.get("adam_ms") or 0.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", default=["1000:32", "1000:256", "3000:32", "3000:256", "10000:32"])
    ap.add_argument("--p", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3, 0.45, 0.7])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=240)
    ap.add_argument("--max-wait", type=float, default=120.0, help="seconds to wait for an idle CPU")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    from cortexnet.io import atomic_write_json

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    result = {
        "benchmark": "crossover",
        "created": stamp,
        "machine": machine(),
        "loadavg_start": os.getloadavg(),
    }
    rows = []
    t0 = time.perf_counter()
    for case in args.cases:
        n, b = (int(v) for v in case.split(":"))
        common = {"n": n, "batch": b, "repeats": args.repeats, "long_s": 30.0, "budget_s": args.timeout / 2}
        wait_for_quiet(args.max_wait)
        dense = run_subprocess("case", {"method": "masked_dense", "p": 0.1, **common}, args.timeout)
        d_ms = step_ms(dense)
        print(f"N={n} B={b}: masked_dense {d_ms} ms (load {os.getloadavg()[0]:.2f})", flush=True)
        points, crossover = [], None
        for p in sorted(args.p):
            wait_for_quiet(args.max_wait)
            rec = run_subprocess("case", {"method": "csr", "p": p, **common}, args.timeout)
            s_ms = step_ms(rec)
            points.append(
                {
                    "p": p,
                    "csr_ms": s_ms,
                    "status": rec.get("status"),
                    "others_cpu_share": rec.get("others_cpu_share"),
                }
            )
            print(f"  csr p={p}: {s_ms} ms", flush=True)
            if s_ms is None or d_ms is None:
                break
            if s_ms >= d_ms:
                prev = points[-2] if len(points) > 1 else None
                if prev and prev["csr_ms"] is not None:
                    w = (d_ms - prev["csr_ms"]) / (s_ms - prev["csr_ms"])
                    crossover = prev["p"] + w * (p - prev["p"])
                else:
                    crossover = p  # csr already slower at the lowest density tried: at most this
                break
        else:
            crossover = None  # csr faster at every density tried
        rows.append(
            {
                "n": n,
                "b": b,
                "masked_dense_ms": d_ms,
                "masked_dense_others_cpu_share": dense.get("others_cpu_share"),
                "csr": points,
                "crossover_p": crossover,
            }
        )
        print(f"  -> crossover p = {crossover}", flush=True)
    result["rows"] = rows
    result["loadavg_end"] = os.getloadavg()
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    out = args.out or ROOT / "benchmarks" / "results" / f"crossover-{stamp}.json"
    atomic_write_json(out, result)
    print(f"wrote {out}")
    for r in rows:
        print(f"  N={r['n']:>6} B={r['b']:>4}: crossover p = {r['crossover_p']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
