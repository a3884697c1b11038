"""One forward+backward of the recurrent layer over 28 steps: the authors' way vs best dense vs cortexnet.

Every case (method, N, p, B) runs in its own subprocess (so that its peak memory, ``ru_maxrss``, is its own)
under a time limit. Methods:

* ``authors``: what the authors' notebook does — ``nn.RNN`` with the connectivity applied through
  ``torch.nn.utils.prune.custom_from_mask``, called once per time step, so the pruning hook recomputes
  ``W * M`` at every step under autograd (PERFORMANCE.md's "authors' way").
* ``best_dense``: the best dense PyTorch we know — ``W * M`` once per batch, then the fused whole-sequence
  :class:`cortexnet.sparse.DenseRecurrence` (weight gradient as one GEMM over all steps).
* ``masked_dense``, ``csr``: cortexnet's backends, through the same layer code (dense input GEMM, the sparse
  weight's ``recurrent``, linear readout, cross-entropy).
* ``auto``: resolved with :func:`cortexnet.sparse.choose_backend` for the case; it *is* the chosen backend's
  code path, so its row repeats that backend's measurement (the table says which one it picked).

Timed: forward + backward of one batch (medians of the timed repeats; a warm-up first unless a single repeat
is projected to exceed ``--long-s``), and separately the fused Adam step. Memory: ``train_peak_mb`` is the
peak RSS of the training phase (forward+backward+Adam: the peak is reset after the setup and freed heap is
returned to the OS first, for every method alike); ``peak_mb`` is the whole process's peak including the setup
(connectivity generation, index build). Before each case the driver waits for an idle CPU (other users' jobs
stall every OpenMP parallel region) and records the CPU share other processes took while it ran. Useful work: 3 · 2 · B · nnz · (T-1)
FLOP. Floor: max(useful FLOP / GEMM ceiling, 3 · (T-1) · nnz · 8 bytes / copy bandwidth), with both ceilings
measured at the start of the run. The dense methods' cost does not depend on p; at N >= ``--share-dense-from``
they are measured at one p per (N, B) and that row is repeated for the other p (flagged ``shared_from_p``).

Usage::

    python benchmarks/recurrent_step.py                      # the full sweep (~25 min on 2 cores)
    python benchmarks/recurrent_step.py --n 1000 --p 0.1 --b 32 --methods csr best_dense
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
METHODS = ("authors", "best_dense", "masked_dense", "csr_torch", "csr", "auto")
DENSE_COST = ("authors", "best_dense", "masked_dense")
STEPS, FEATURES, CLASSES = 28, 28, 10


# -- worker side --------------------------------------------------------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _trim_heap() -> None:
    """Return freed heap pages to the OS (glibc), so that the training phase's peak is measured from the live
    data, not from what the setup (e.g. the connectivity generator) left fragmented in the heap."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak() -> bool:
    """Reset this process's peak RSS (Linux >= 4.0: ``clear_refs`` 5 resets VmHWM and ru_maxrss)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def run_case(
    method: str,
    n: int,
    p: float,
    batch: int,
    *,
    steps: int = STEPS,
    repeats: int = 3,
    long_s: float = 20.0,
    budget_s: float = 100.0,
    threads: int = 2,
    optimizer_step: bool = True,
    seed: int = 0,
) -> dict:
    """Build one case, time forward+backward (and the Adam step), return a JSON-able record."""
    import torch
    from torch import nn

    from cortexnet.connectivity import make_connectivity
    from cortexnet.sparse import DenseRecurrence, make_sparse_weight

    torch.set_num_threads(threads)
    t_start = time.perf_counter()
    rss_base = _rss_mb()
    g = torch.Generator().manual_seed(seed)
    conn = make_connectivity("er", n, n, generator=g, p=p)
    nnz = conn.nnz
    init = (torch.rand(nnz, generator=g) * 2 - 1) * 1e-3  # the paper's U(-0.001, 0.001)
    x = torch.rand(batch, steps, FEATURES, generator=g)
    y = torch.randint(0, CLASSES, (batch,), generator=g)
    readout = nn.Linear(n, CLASSES)
    record: dict = {"method": method, "n": n, "p": p, "b": batch, "nnz": nnz, "steps": steps}

    if method == "authors":
        from torch.nn.utils import prune

        rnn = nn.RNN(FEATURES, n, nonlinearity="relu", batch_first=True)
        mask = conn.to_dense().float()
        with torch.no_grad():
            w = torch.zeros(n, n)
            w[conn.rows(), conn.col] = init
            rnn.weight_hh_l0.copy_(w)
            del w
        prune.custom_from_mask(rnn, "weight_hh_l0", mask)
        del mask
        params = [*rnn.parameters(), *readout.parameters()]

        def forward_backward():
            h = torch.zeros(1, batch, n)
            for t in range(steps):  # one call per step: the pruning hook recomputes W * M every step
                _, h = rnn(x[:, t : t + 1], h)
            nn.functional.cross_entropy(readout(h[0]), y).backward()

    else:
        w_in = nn.Parameter(torch.rand(n, FEATURES, generator=g) * 0.02 - 0.01)
        bias = nn.Parameter(torch.zeros(n))
        if method == "best_dense":
            mask = conn.to_dense()
            weight = nn.Parameter(torch.zeros(n, n))
            with torch.no_grad():
                weight[conn.rows(), conn.col] = init
            rec_params = [weight]

            def recurrence(drive):
                return DenseRecurrence.apply(drive, weight * mask, None, "relu")

        else:
            from cortexnet.sparse import native

            # csr_torch: the csr backend on PyTorch's sparse kernels (the fallback where nothing compiles).
            native.set_csr_kernel("torch" if method == "csr_torch" else None)
            record["csr_kernel"] = "torch" if method == "csr_torch" else native.native_status()
            options = {"batch_hint": batch} if method == "auto" else {}
            rec = make_sparse_weight("csr" if method == "csr_torch" else method, conn, **options)
            rec.set_values_(conn.rows(), conn.col, init)
            record["backend"] = rec.backend
            if hasattr(rec, "index"):
                rec.index()  # build the kernel structures now (setup, not timed)
            rec_params = list(rec.parameters())

            def recurrence(drive):
                return rec.recurrent(drive, "relu")

        params = [w_in, bias, *rec_params, *readout.parameters()]

        def loss():  # as in RecurrentLayer.forward: the drive is not kept alive during the backward
            drive = torch.addmm(bias, x.transpose(0, 1).reshape(-1, FEATURES), w_in.t())
            states = recurrence(drive.view(steps, batch, n))
            return nn.functional.cross_entropy(readout(states[-1]), y)

        def forward_backward():
            loss().backward()

    del conn, init
    opt = torch.optim.Adam(params, lr=1e-3, fused=True) if optimizer_step else None
    record["setup_s"] = round(time.perf_counter() - t_start, 1)
    record["setup_peak_mb"] = round(_peak_mb(), 1)
    _trim_heap()
    record["rss_after_setup_mb"] = round(_rss_mb(), 1)
    record["peak_reset"] = _reset_peak()

    times, opt_times = [], []
    t_loop = time.perf_counter()
    i = 0
    while True:
        for prm in params:
            prm.grad = None
        t0 = time.perf_counter()
        forward_backward()
        dt = time.perf_counter() - t0
        if opt is not None:
            t1 = time.perf_counter()
            opt.step()
            opt_times.append(time.perf_counter() - t1)
        warmup = i == 0 and dt < long_s
        if not warmup:
            times.append(dt)
        i += 1
        elapsed = time.perf_counter() - t_loop
        if len(times) >= repeats or (times and elapsed + dt > budget_s):
            break
    times_ms = [round(t * 1e3, 2) for t in times]
    med = sorted(times_ms)[len(times_ms) // 2] if len(times_ms) % 2 else _median(times_ms)
    record.update(
        ms=med,
        min_ms=min(times_ms),
        times_ms=times_ms,
        warmup=i > len(times),
        adam_ms=round(_median([t * 1e3 for t in opt_times[1:] or opt_times]), 2) if opt_times else None,
        train_peak_mb=round(_peak_mb(), 1),  # forward+backward+Adam (since the reset after setup)
        peak_mb=round(max(_peak_mb(), record["setup_peak_mb"]), 1),
        rss_base_mb=round(rss_base, 1),
        loadavg_end=os.getloadavg()[0],
    )
    return record


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    k = len(s)
    return s[k // 2] if k % 2 else 0.5 * (s[k // 2 - 1] + s[k // 2])


def measure_ceilings(threads: int = 2, size: int = 4096, copy_mib: int = 256) -> dict:
    """Dense fp32 GEMM (``size``³, 4096³ by default) GFLOP/s and copy bandwidth (read + write of ``copy_mib``
    MiB, GB/s) of this machine. The GEMM ceiling is the faster of PyTorch's BLAS (MKL) and oneDNN, the best
    dense product a user of this machine can get (``cortexnet.sparse.gemm``)."""
    import torch

    from cortexnet.sparse import gemm as dense_gemm

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    paths = {"blas": torch.mm}
    if dense_gemm.onednn_available():  # a @ bᵀ with bᵀ a view: the same product for timing
        paths["onednn"] = lambda x, y: torch.ops.mkldnn._linear_pointwise(x, y, None, "none", [], "")
    runs: dict[str, list[float]] = {}
    for name, product in paths.items():
        product(a, b)
        runs[name] = []
        for _ in range(3):
            t0 = time.perf_counter()
            product(a, b)
            runs[name].append(2 * size**3 / (time.perf_counter() - t0) / 1e9)
    gemm = [max(r) for r in runs.values()]
    del a, b
    src = torch.randn(copy_mib * 2**18)  # copy_mib MiB of float32
    dst = torch.empty_like(src)
    dst.copy_(src)
    bw = []
    for _ in range(5):
        t0 = time.perf_counter()
        dst.copy_(src)
        bw.append(2 * src.numel() * 4 / (time.perf_counter() - t0) / 1e9)
    return {
        "gemm_gflops": round(max(gemm), 1),
        "copy_gbs": round(max(bw), 1),
        "gemm_runs": runs,
        "copy_runs": bw,
    }


# -- driver side --------------------------------------------------------------------------------------------
def machine() -> dict:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "avx512": " avx512f " in flags,
        "memory_gib": mem,
        "torch": torch.__version__,
        "mkl": torch.backends.mkl.is_available(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _cpu_busy_s() -> float:
    """Seconds of non-idle CPU time of the whole machine so far (all cores, from /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(max_wait_s: float, busy_below: float = 0.15, window_s: float = 2.0) -> float:
    """Wait until the machine's CPUs are ≥ (1 - busy_below) idle over ``window_s`` (other users' jobs make
    2-thread timings meaningless: a descheduled OpenMP thread stalls every parallel region). Returns the
    seconds waited (at most ``max_wait_s``)."""
    t0 = time.perf_counter()
    cores = os.cpu_count() or 1
    while True:
        b0 = _cpu_busy_s()
        time.sleep(window_s)
        if (_cpu_busy_s() - b0) / (window_s * cores) < busy_below:
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > max_wait_s:
            return time.perf_counter() - t0


def _mem_available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable"):
            return int(line.split()[1]) / 2**20
    return 8.0


def estimate_gb(method: str, n: int, nnz: int, batch: int, steps: int = STEPS) -> float:
    """Rough peak memory of a case (to skip what cannot fit): the dominant tensors only."""
    states = steps * batch * n * 4 * 6
    if method == "authors":  # W*M saved at every step, plus weight, mask, grad, Adam
        return (n * n * 4 * (steps + 6) + states) / 1e9
    if method in ("best_dense", "masked_dense"):
        return (n * n * 26 + states) / 1e9
    # csr: values, grad, Adam, indices, gathered values, build-time sort temporaries
    return (nnz * 64 + states + n * 64) / 1e9 + 0.4


def work_units(method: str, n: int, nnz: int, batch: int) -> float:
    """What a case's time scales with, per method (for projecting untried cases from tried ones)."""
    if method == "authors":
        return n * n * (batch + 48.0)  # per-step W*M and outer products are there even at B = 1
    if method in ("best_dense", "masked_dense"):
        return n * n * (batch + 8.0)
    return nnz * (batch + 8.0) + n * batch * 50.0


#: Rough seconds per work unit of each method on this machine (ordering only; projections use measurements).
WORK_COST = {
    "authors": 1e-8,
    "best_dense": 3.5e-9,
    "masked_dense": 3.5e-9,
    "csr_torch": 5e-9,
    "csr": 3e-9,
    "auto": 3e-9,
}


def expected_nnz(n: int, p: float) -> int:
    return round(p * n * (n - 1))


def build_cases(args) -> list[tuple]:
    """(priority, method, n, p, b) in run order: the issue's target cases first, then by size."""
    targets = {(10_000, 0.1, 32), (10_000, 0.1, 256), (10_000, 0.01, 32), (100_000, 0.01, 32)}
    cases = []
    for n in args.n:
        for p in args.p:
            for b in args.b:
                for m in args.methods:
                    if m == "auto":
                        continue  # resolved from the chosen backend's row
                    prio = 0 if (n, p, b) in targets else 1
                    cases.append((prio, work_units(m, n, expected_nnz(n, p), b) * WORK_COST[m], m, n, p, b))
    cases.sort(key=lambda c: (c[0], c[1], METHODS.index(c[2])))
    return [(m, n, p, b) for _, _, m, n, p, b in cases]


def run_subprocess(
    kind: str, payload: dict, timeout: float, *, script: Path | None = None, env: dict | None = None
) -> dict:
    """Run ``script --worker KIND JSON`` (this file by default) and return its last JSON line with the status,
    wall time and the CPU share other processes took meanwhile. ``env``: extra environment variables."""
    cmd = [sys.executable, str(Path(script or __file__).resolve()), "--worker", kind, json.dumps(payload)]
    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    busy0 = _cpu_busy_s()
    own0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "wall_s": round(time.perf_counter() - t0, 1)}
    wall = round(time.perf_counter() - t0, 1)
    own1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (own1.ru_utime - own0.ru_utime) + (own1.ru_stime - own0.ru_stime)
    # CPU time other processes used while the case ran (contention: > a few % of wall x cores is bad).
    others = max(0.0, _cpu_busy_s() - busy0 - own)
    contention = round(others / (wall * (os.cpu_count() or 1)), 3) if wall > 0 else 0.0
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        err = (out.stderr or "").strip().splitlines()[-3:]
        status = "killed (out of memory?)" if out.returncode in (-9, 137) else f"failed rc={out.returncode}"
        return {"status": status, "error": " | ".join(err), "wall_s": wall}
    rec = json.loads(lines[-1])
    rec.update(status="ok", wall_s=wall, others_cpu_share=contention)
    return rec


def derive(rec: dict, ceilings: dict) -> None:
    """Useful GFLOP/s and the floor of a measured case (in place)."""
    useful = 3 * 2 * rec["b"] * rec["nnz"] * (rec.get("steps", STEPS) - 1)
    compute_floor = useful / (ceilings["gemm_gflops"] * 1e9)
    memory_floor = 3 * (rec.get("steps", STEPS) - 1) * rec["nnz"] * 8 / (ceilings["copy_gbs"] * 1e9)
    rec["useful_gflop"] = round(useful / 1e9, 2)
    floor_ms = 1e3 * max(compute_floor, memory_floor)
    rec["floor_ms"] = round(floor_ms, 3)
    rec["floor_bound"] = "compute" if compute_floor >= memory_floor else "memory"
    if rec.get("ms"):
        rec["useful_gflops"] = round(useful / (rec["ms"] * 1e6), 2)
        rec["x_floor"] = round(rec["ms"] / floor_ms, 2)


def fmt_table(records: list[dict]) -> str:
    head = (
        f"{'N':>7} {'p':>5} {'B':>4} {'method':<13} {'ms/batch':>10} {'GFLOP/s':>8} {'trainMB':>8} "
        f"{'adam ms':>8} {'xfloor':>7} {'vs authors':>10} {'vs dense':>9}  note"
    )
    rows = [head, "-" * len(head)]
    for r in records:
        ms = f"{r['ms']:.0f}" if r.get("ms") else "-"
        gf = f"{r['useful_gflops']:.1f}" if r.get("useful_gflops") else "-"
        pk = f"{r.get('train_peak_mb') or r['peak_mb']:.0f}" if r.get("peak_mb") else "-"
        ad = f"{r['adam_ms']:.0f}" if r.get("adam_ms") else "-"
        xf = f"{r['x_floor']:.1f}" if r.get("x_floor") else "-"
        va = f"{r['speedup_vs_authors']:.1f}x" if r.get("speedup_vs_authors") else "-"
        vd = f"{r['speedup_vs_best_dense']:.1f}x" if r.get("speedup_vs_best_dense") else "-"
        note = r.get("note", "") if r.get("status") == "ok" else f"{r.get('status')}: {r.get('note', '')}"
        if r.get("others_cpu_share", 0) > 0.05:
            note = f"contended ({100 * r['others_cpu_share']:.0f}% CPU used by others) {note}"
        rows.append(
            f"{r['n']:>7} {r['p']:>5} {r['b']:>4} {r['method']:<13} {ms:>10} {gf:>8} {pk:>8} {ad:>8} "
            f"{xf:>7} {va:>10} {vd:>9}  {note}"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", nargs=2, metavar=("KIND", "JSON"), help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, nargs="+", default=[1000, 5000, 10000, 20000, 50000, 100000])
    ap.add_argument("--p", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    ap.add_argument("--b", type=int, nargs="+", default=[32, 100, 256])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per case (median reported)")
    ap.add_argument("--case-timeout", type=float, default=150.0, help="seconds per case (subprocess)")
    ap.add_argument("--case-budget", type=float, default=40.0, help="seconds of timed repeats per case")
    ap.add_argument("--big-timeout", type=float, default=420.0, help="seconds per case at N >= 50,000")
    ap.add_argument("--budget", type=float, default=25 * 60.0, help="seconds for the whole sweep")
    ap.add_argument("--long-s", type=float, default=15.0, help="no warm-up when one repeat takes longer")
    ap.add_argument("--share-dense-from", type=int, default=1_000, help="N from which dense rows are shared")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-wait", type=float, default=60.0, help="seconds to wait for an idle CPU per case")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    if args.worker:
        kind, payload = args.worker[0], json.loads(args.worker[1])
        rec = measure_ceilings(payload.get("threads", 2)) if kind == "ceilings" else run_case(**payload)
        print(json.dumps(rec), flush=True)
        return 0

    sys.path.insert(0, str(ROOT))
    from cortexnet.sparse import choose_backend

    t_sweep = time.perf_counter()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS / f"recurrent_step-{stamp}.json"
    result = {
        "benchmark": "recurrent_step",
        "created": stamp,
        "machine": machine(),
        "threads": args.threads,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "worker"},
        "loadavg_start": os.getloadavg(),
    }
    print(f"load average {os.getloadavg()}; measuring ceilings ...", flush=True)
    ceil = run_subprocess("ceilings", {"threads": args.threads}, 300)
    result["ceilings"] = ceil
    print(f"ceilings: GEMM {ceil.get('gemm_gflops')} GFLOP/s, copy {ceil.get('copy_gbs')} GB/s", flush=True)

    measured: dict[tuple, dict] = {}
    rates: dict[str, list[float]] = {}  # seconds per work unit, per method
    for method, n, p, b in build_cases(args):
        nnz = expected_nnz(n, p)
        key = (method, n, p, b)
        base = {"method": method, "n": n, "p": p, "b": b, "nnz": nnz, "steps": STEPS}
        if method in DENSE_COST and n >= args.share_dense_from:
            src = next((measured[(method, n, q, b)] for q in args.p if (method, n, q, b) in measured), None)
            if src is not None:
                measured[key] = {**src, "p": p, "nnz": nnz}
                if src.get("status") == "ok":
                    measured[key]["shared_from_p"] = src["p"]
                    measured[key]["note"] = f"dense cost: row measured at p={src['p']}"
                continue
        need = estimate_gb(method, n, nnz, b)
        avail = _mem_available_gb()
        if need > 0.8 * avail:
            measured[key] = {**base, "status": "skipped", "note": f"does not fit (needs ~{need:.0f} GB)"}
            print(f"skip {key}: needs ~{need:.1f} GB of {avail:.1f} available", flush=True)
            continue
        left = args.budget - (time.perf_counter() - t_sweep)
        limit = min(args.big_timeout if n >= 50_000 else args.case_timeout, left)
        projected = None
        if rates.get(method):
            per = max(rates[method]) * work_units(method, n, nnz, b)  # the slowest rate seen: conservative
            projected = per * (1 if per > args.long_s else 2)  # warm-up + at least one repeat
            if projected > limit:
                why = "sweep budget" if left < args.case_timeout else f"case limit {args.case_timeout:.0f}s"
                measured[key] = {
                    **base,
                    "status": "skipped",
                    "note": f"projected {projected:.0f}s > {why}",
                    "projected_s": round(projected, 1),
                }
                print(f"skip {key}: projected {projected:.0f}s > {limit:.0f}s", flush=True)
                continue
        if limit < 10:
            measured[key] = {**base, "status": "skipped", "note": "sweep budget exhausted"}
            continue
        payload = {
            "method": method,
            "n": n,
            "p": p,
            "batch": b,
            "repeats": args.repeats,
            "long_s": args.long_s,
            "budget_s": max(5.0, min(0.6 * limit, args.case_budget)),
            "threads": args.threads,
        }
        waited = wait_for_quiet(min(args.max_wait, max(0.0, left - limit)))
        load = os.getloadavg()[0]
        print(
            f"run {key} (limit {limit:.0f}s, load {load:.2f}, waited {waited:.0f}s) ...", end=" ", flush=True
        )
        rec = run_subprocess("case", payload, limit)
        rec = {**base, **rec, "loadavg_start": load, "waited_for_quiet_s": round(waited, 1)}
        measured[key] = rec
        if rec["status"] == "ok":
            rates.setdefault(method, []).append(rec["ms"] / 1e3 / work_units(method, n, rec["nnz"], b))
            print(
                f"{rec['ms']:.0f} ms, train peak {rec['train_peak_mb']:.0f} MB (setup {rec['setup_peak_mb']:.0f})",
                flush=True,
            )
        else:
            print(rec["status"], rec.get("error", ""), flush=True)
            if rec["status"] == "timeout":
                rec["note"] = f"exceeded the {limit:.0f}s limit"
                rates.setdefault(method, []).append(limit / work_units(method, n, nnz, b))

    # auto = the chosen backend's row; ratios; floors.
    records = []
    for n in args.n:
        for p in args.p:
            for b in args.b:
                nnz = expected_nnz(n, p)
                for m in args.methods:
                    if m == "auto":
                        chosen = choose_backend(n, n, nnz, batch_hint=b)
                        src = measured.get((chosen, n, p, b))
                        if src is None:
                            continue
                        rec = {
                            **src,
                            "method": "auto",
                            "note": f"auto -> {chosen} (same code path; row reused)",
                        }
                        rec["backend"] = chosen
                    elif (m, n, p, b) in measured:
                        rec = dict(measured[(m, n, p, b)])
                    else:
                        continue
                    if rec.get("status") == "ok":
                        derive(rec, ceil)
                        for ref in ("authors", "best_dense"):
                            other = measured.get((ref, n, p, b))
                            if other and other.get("status") == "ok" and rec.get("ms"):
                                rec[f"speedup_vs_{ref}"] = round(other["ms"] / rec["ms"], 2)
                                if other.get("peak_mb") and rec.get("peak_mb"):
                                    rec[f"memory_ratio_vs_{ref}"] = round(
                                        rec["peak_mb"] / other["peak_mb"], 3
                                    )
                    records.append(rec)
    return finish_run(result, records, out, t_sweep, fmt_table)


def finish_run(result: dict, records: list[dict], out: Path, t0: float, fmt_table) -> int:
    """Add the records, the end load and the wall time to ``result``, write it to ``out`` (atomically) and print
    the table (``fmt_table(records)``); returns the exit status 0."""
    sys.path.insert(0, str(ROOT))
    from cortexnet.io import atomic_write_json

    result["records"] = records
    result["loadavg_end"] = os.getloadavg()
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    table = fmt_table(records)
    result["table"] = table.splitlines()
    atomic_write_json(out, result)
    print(table)
    print(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} ({result['wall_s']:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
