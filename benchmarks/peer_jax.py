"""Peer comparison: one forward+backward of the same sparse recurrent layer in JAX and in cortexnet, one run.

The case: h_t = relu(x_t W_inᵀ + b + h_{t-1} (W ⊙ M)ᵀ) over T steps (h_0 = 0, so step 1 has no recurrent
product), logits = h_T W_outᵀ + b_out, mean softmax cross-entropy; the gradient of every parameter (W_in, b,
the recurrent weights, W_out, b_out). Both sides get the same connectivity M (one boolean mask drawn by NumPy
from a fixed seed, no self-connections: Bernoulli(p) per off-diagonal position), the same initial parameters
and the same batch, and every worker records the loss it computed and a hash of M, so the run shows that
every method computed the same thing. Methods, each in its own subprocess:

* ``jax_dense``: a dense W (N × N) multiplied by M inside the loss, the recurrence in ``jax.lax.scan``,
  ``jax.jit(jax.value_and_grad(loss))`` over all parameters.
* ``jax_bcsr``, ``jax_bcoo``: the same with W a ``jax.experimental.sparse`` BCSR / BCOO matrix built inside
  the loss from the nnz values (the gradient is taken w.r.t. the values; states kept feature-major, (N, B),
  so that every step is sparse × dense). A JAX sparse op without a gradient, or one that fails, is recorded
  with its reason in the JSON and the table instead of a time.
* ``cortexnet_masked_dense``, ``cortexnet_csr``, ``cortexnet_auto``: cortexnet's recurrent layer code path, as
  in ``recurrent_step.py`` (dense input GEMM, the sparse weight's ``recurrent``, linear readout from the last
  step, cross-entropy) with backend masked_dense / csr / auto (``auto``'s record says which one it chose).

Timed: forward + backward (JAX: after compilation, which is timed separately, with ``block_until_ready``): one
warm-up call, then up to ``--repeats`` timed repeats within ``--case-budget`` seconds (at least one); the
median is reported. Memory: ``train_peak_mb`` is the peak RSS of the timed phase
(after the setup and the compilation, with the peak reset and freed heap returned to the OS first, as in
``recurrent_step.py``); ``peak_mb`` is the whole process.

Threads. cortexnet: ``torch.set_num_threads(--threads)``. XLA:CPU (jaxlib 0.10.2) has no option for its
compute threads: it sizes its intra-op Eigen pool (threads named ``tf_XLAEigen``) from the process's CPU
affinity (``tsl::port::NumSchedulableCPUs``, i.e. ``sched_getaffinity``), and the calling thread works on each
op too (checked with per-thread CPU times: with 2 CPUs allowed, a jitted matmul ran on the 2 pool threads and 2
other threads; pinned to 1 CPU, on one thread only). ``OMP_NUM_THREADS`` does not change the pool, the
often-quoted ``XLA_FLAGS=... intra_op_parallelism_threads=N`` token (no leading dashes) is silently ignored,
and ``--intra_op_parallelism_threads=N`` aborts ("Unknown flag in XLA_FLAGS"). What bounds XLA is therefore
the affinity: every worker, JAX and torch alike, is pinned (``sched_setaffinity``, what ``taskset -c`` does)
to the first ``--threads`` CPUs it may run on before torch or jax is imported, so neither side can use more
than ``--threads`` cores at once, with ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=true`` (the default, made
explicit) and ``OMP_NUM_THREADS=--threads``. JAX records report the size of the Eigen pool they got
(``xla_eigen_threads``), every record the CPU time over wall time of its timed phase (``cpu_util``).

Usage::

    pip install -e ".[bench]"                                # JAX for CPU (benchmark-only dependency)
    python benchmarks/peer_jax.py                            # N = 10,000, p = 0.1, B = 32, T = 28
    python benchmarks/peer_jax.py --p 0.1 0.01               # both densities in one run
    python benchmarks/peer_jax.py --n 500 --p 0.1 --b 8      # a tiny smoke run
    python benchmarks/peer_jax.py --check                    # float64: loss and gradients agree (N = 50)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))

from recurrent_step import (  # noqa: E402  (benchmarks/ is on sys.path)
    _median,
    _mem_available_gb,
    _peak_mb,
    _reset_peak,
    _rss_mb,
    _trim_heap,
    estimate_gb,
    finish_run,
    machine,
    measure_ceilings,
    run_subprocess,
    wait_for_quiet,
)

JAX_METHODS = ("jax_dense", "jax_bcsr", "jax_bcoo")
CORTEXNET_METHODS = ("cortexnet_masked_dense", "cortexnet_csr", "cortexnet_auto")
METHODS = JAX_METHODS + CORTEXNET_METHODS
FEATURES, CLASSES = 28, 10
MASK_CHUNK_ROWS = 512  # rows of the mask drawn at a time (part of the definition of the mask for a seed)
NEED_JAX = 'peer_jax.py needs JAX for CPU (benchmark-only dependency): pip install -e ".[bench]"'


# -- the problem: one mask, one set of parameters, one batch (NumPy, shared by both sides) -----------------
def make_problem(
    n: int,
    p: float,
    batch: int,
    steps: int,
    *,
    seed: int = 0,
    dtype: str = "float32",
    rec_scale: float = 1e-3,
    in_scale: float = 0.01,
) -> dict:
    """The connectivity (CSR: ``crow``, ``col``, ``rows``), the parameters and the batch, from ``seed``.

    The mask is Bernoulli(p) at every off-diagonal position, drawn ``MASK_CHUNK_ROWS`` rows at a time (no N × N
    float temporary). Recurrent values U(-rec_scale, rec_scale) in CSR order (the paper's U(-0.001, 0.001) by
    default), W_in U(-in_scale, in_scale), b = 0, W_out and b_out as ``nn.Linear``'s default init."""
    import numpy as np

    rng = np.random.default_rng(seed)
    counts = np.zeros(n, dtype=np.int64)
    cols = []
    for start in range(0, n, MASK_CHUNK_ROWS):
        stop = min(n, start + MASK_CHUNK_ROWS)
        block = rng.random((stop - start, n), dtype=np.float32) < p
        block[np.arange(stop - start), np.arange(start, stop)] = False  # no self-connections
        r, c = np.nonzero(block)  # row-major: CSR order, columns sorted within each row
        counts[start:stop] = np.bincount(r, minlength=stop - start)
        cols.append(c.astype(np.int64))
        del block, r, c
    col = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    del cols
    crow = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=crow[1:])
    sha = hashlib.sha1(crow.tobytes())
    sha.update(col.tobytes())
    bound = 1.0 / np.sqrt(n)
    return {
        "n": n,
        "p": p,
        "batch": batch,
        "steps": steps,
        "seed": seed,
        "dtype": dtype,
        "crow": crow,
        "col": col,
        "rows": np.repeat(np.arange(n, dtype=np.int64), counts),
        "nnz": int(col.size),
        "connectivity_sha1": sha.hexdigest()[:16],
        "values": rng.uniform(-rec_scale, rec_scale, col.size).astype(dtype),
        "w_in": rng.uniform(-in_scale, in_scale, (n, FEATURES)).astype(dtype),
        "b": np.zeros(n, dtype=dtype),
        "w_out": rng.uniform(-bound, bound, (CLASSES, n)).astype(dtype),
        "b_out": rng.uniform(-bound, bound, CLASSES).astype(dtype),
        "x": rng.random((batch, steps, FEATURES)).astype(dtype),
        "y": rng.integers(0, CLASSES, batch).astype(np.int64),
    }


# -- JAX side -----------------------------------------------------------------------------------------------
def build_jax(method: str, prob: dict):
    """``(fn, args, rec_key)``: ``fn(*args)`` returns ``(loss, grads)`` (a dict like ``args[0]``);
    ``grads[rec_key]`` is the recurrent weights' gradient (dense N × N for jax_dense, nnz values otherwise)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    n = prob["n"]
    relu = jax.nn.relu

    def cross_entropy(logits, y):
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    params = {k: jnp.asarray(prob[k]) for k in ("w_in", "b", "w_out", "b_out")}
    x = jnp.asarray(prob["x"])
    y = jnp.asarray(prob["y"].astype(np.int32))
    if method == "jax_dense":
        w = np.zeros((n, n), dtype=prob["dtype"])
        w[prob["rows"], prob["col"]] = prob["values"]
        mask = np.zeros((n, n), dtype=bool)
        mask[prob["rows"], prob["col"]] = True
        params["w_rec"] = jnp.asarray(w)
        extra = jnp.asarray(mask)
        del w, mask

        def loss(params, x, y, mask):
            w_eff = params["w_rec"] * mask  # under autograd: the gradient w.r.t. w_rec is masked
            drive = jnp.einsum("btf,nf->tbn", x, params["w_in"]) + params["b"]  # (T, B, N)

            def step(h, u):
                return relu(u + h @ w_eff.T), None

            h, _ = lax.scan(step, relu(drive[0]), drive[1:])
            return cross_entropy(h @ params["w_out"].T + params["b_out"], y)

        rec_key = "w_rec"
    elif method in ("jax_bcsr", "jax_bcoo"):
        from jax.experimental import sparse

        params["values"] = jnp.asarray(prob["values"])
        if method == "jax_bcsr":
            extra = (jnp.asarray(prob["col"].astype(np.int32)), jnp.asarray(prob["crow"].astype(np.int32)))

            def matrix(values, extra):
                return sparse.BCSR((values, *extra), shape=(n, n))

        else:
            extra = jnp.asarray(np.stack([prob["rows"], prob["col"]], axis=1).astype(np.int32))

            def matrix(values, extra):
                return sparse.BCOO((values, extra), shape=(n, n), indices_sorted=True, unique_indices=True)

        def loss(params, x, y, extra):
            w = matrix(params["values"], extra)
            drive = jnp.einsum("btf,nf->tnb", x, params["w_in"]) + params["b"][:, None]  # (T, N, B)

            def step(h, u):  # feature-major (N, B): sparse (N × N) @ dense (N × B)
                return relu(u + w @ h), None

            h, _ = lax.scan(step, relu(drive[0]), drive[1:])
            return cross_entropy((params["w_out"] @ h).T + params["b_out"], y)

        rec_key = "values"
    else:
        raise ValueError(f"unknown JAX method {method!r}")
    return jax.jit(jax.value_and_grad(loss)), (params, x, y, extra), rec_key


def jax_grads_canonical(prob: dict, grads: dict, rec_key: str) -> dict:
    """NumPy gradients with the recurrent one as nnz values in CSR order (both layouts)."""
    import numpy as np

    out = {k: np.asarray(v) for k, v in grads.items() if k != rec_key}
    g = np.asarray(grads[rec_key])
    out["rec"] = g[prob["rows"], prob["col"]] if g.ndim == 2 else g
    return out


# -- cortexnet side -----------------------------------------------------------------------------------------
def build_cortexnet(method: str, prob: dict):
    """``(loss_fn, params, rec)``: cortexnet's recurrent layer code path (as in ``recurrent_step.py``)."""
    import torch
    from torch import nn

    from cortexnet.connectivity import Connectivity
    from cortexnet.sparse import make_sparse_weight

    dtype = getattr(torch, prob["dtype"])
    n, steps, batch = prob["n"], prob["steps"], prob["batch"]
    backend = method.removeprefix("cortexnet_")
    conn = Connectivity(n, n, torch.from_numpy(prob["crow"]), torch.from_numpy(prob["col"]))
    options = {"batch_hint": batch} if backend == "auto" else {}
    rec = make_sparse_weight(backend, conn, **options).to(dtype)
    rec.set_values_(conn.rows(), conn.col, torch.from_numpy(prob["values"]))
    if hasattr(rec, "index"):
        rec.index()  # build the kernel structures now (setup, not timed)
    w_in = nn.Parameter(torch.from_numpy(prob["w_in"].copy()))
    bias = nn.Parameter(torch.from_numpy(prob["b"].copy()))
    readout = nn.Linear(n, CLASSES, dtype=dtype)
    with torch.no_grad():
        readout.weight.copy_(torch.from_numpy(prob["w_out"]))
        readout.bias.copy_(torch.from_numpy(prob["b_out"]))
    x = torch.from_numpy(prob["x"])
    y = torch.from_numpy(prob["y"])

    def loss_fn():  # as in RecurrentLayer.forward / recurrent_step.py
        drive = torch.addmm(bias, x.transpose(0, 1).reshape(-1, FEATURES), w_in.t())
        states = rec.recurrent(drive.view(steps, batch, n), "relu")
        return nn.functional.cross_entropy(readout(states[-1]), y)

    params = {"w_in": w_in, "b": bias, "w_out": readout.weight, "b_out": readout.bias}
    return loss_fn, params, rec


def torch_grads_canonical(params: dict, rec) -> dict:
    out = {k: v.grad.detach().numpy().copy() for k, v in params.items()}
    out["rec"] = rec.active_grads().numpy().copy()
    return out


# -- worker side --------------------------------------------------------------------------------------------
def _pin(cpus: list[int] | None) -> None:
    """Pin this process (before torch / jax start their thread pools) to ``cpus``: bounds XLA's pool."""
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)


def _thread_names() -> dict[str, int]:
    names: dict[str, int] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            name = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
        except OSError:
            continue
        names[name] = names.get(name, 0) + 1
    return names


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def time_loop(step, *, repeats: int, budget_s: float) -> list[float]:
    """Seconds of each timed call of ``step``: up to ``repeats``, fewer when the next one would end past
    ``budget_s`` (at least one), as in ``recurrent_step.py`` (the caller has made the warm-up call)."""
    times: list[float] = []
    t_loop = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        step()
        dt = time.perf_counter() - t0
        times.append(dt)
        if len(times) >= repeats or time.perf_counter() - t_loop + dt > budget_s:
            return times


def run_case(
    method: str,
    n: int,
    p: float,
    batch: int,
    *,
    steps: int,
    seed: int = 0,
    repeats: int = 3,
    budget_s: float = 60.0,
    threads: int = 2,
    cpus: list[int] | None = None,
) -> dict:
    """Build one case in this (fresh) process, time forward+backward, return a JSON-able record.

    The first call (JAX: the first after compilation) is the warm-up, and gives the recorded loss and norm of
    the recurrent weights' gradient (the same on every method within float32 rounding)."""
    _pin(cpus)
    t_start = time.perf_counter()
    rss_base = _rss_mb()
    record: dict = {"method": method, "n": n, "p": p, "b": batch, "steps": steps}
    if method in JAX_METHODS:
        import jax
        import jax.numpy as jnp

        record["jax"] = jax.__version__
    else:
        import torch

        torch.set_num_threads(threads)
        record["torch_threads"] = torch.get_num_threads()
    prob = make_problem(n, p, batch, steps, seed=seed)
    record.update(nnz=prob["nnz"], connectivity_sha1=prob["connectivity_sha1"])
    record["affinity"] = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None

    if method in JAX_METHODS:
        fn, args, rec_key = build_jax(method, prob)
        del prob
        stage = "compile"
        try:
            t0 = time.perf_counter()
            compiled = fn.lower(*args).compile()
            record["compile_s"] = round(time.perf_counter() - t0, 2)
            stage = "first call"
            value, grads = jax.block_until_ready(compiled(*args))
        except Exception as exc:  # a sparse op without a gradient (or any failure): recorded, not raised
            msg = str(exc).strip().splitlines()
            record["failure"] = f"{stage}: {type(exc).__name__}: {msg[0][:300] if msg else ''}"
            record["setup_s"] = round(time.perf_counter() - t_start, 1)
            record["peak_mb"] = round(_peak_mb(), 1)
            return record
        record["loss"] = float(value)
        record["grad_rec_norm"] = float(jnp.linalg.norm(grads[rec_key]))
        del value, grads

        def step():
            jax.block_until_ready(compiled(*args))

    else:
        import torch

        loss_fn, params, rec = build_cortexnet(method, prob)
        del prob
        record["backend"] = rec.backend
        all_params = [*params.values(), *rec.parameters()]

        def step():
            for prm in all_params:
                prm.grad = None
            loss = loss_fn()
            loss.backward()
            return loss

        loss = step()  # the warm-up
        record["loss"] = loss.item()
        record["grad_rec_norm"] = float(torch.linalg.vector_norm(rec.active_grads()))
        del loss

    record["setup_s"] = round(time.perf_counter() - t_start, 1)
    record["setup_peak_mb"] = round(_peak_mb(), 1)
    _trim_heap()
    record["rss_after_setup_mb"] = round(_rss_mb(), 1)
    record["peak_reset"] = _reset_peak()
    cpu0, wall0 = _cpu_s(), time.perf_counter()
    times = time_loop(step, repeats=repeats, budget_s=budget_s)
    wall = time.perf_counter() - wall0
    times_ms = [round(t * 1e3, 2) for t in times]
    record.update(
        ms=round(_median(times_ms), 2),
        min_ms=min(times_ms),
        times_ms=times_ms,
        cpu_util=round((_cpu_s() - cpu0) / wall, 2) if wall > 0 else None,
        train_peak_mb=round(_peak_mb(), 1),
        peak_mb=round(max(_peak_mb(), record["setup_peak_mb"]), 1),
        rss_base_mb=round(rss_base, 1),
        loadavg_end=os.getloadavg()[0],
    )
    if method in JAX_METHODS:
        names = _thread_names()
        record["xla_eigen_threads"] = names.get("tf_XLAEigen", 0)
        record["process_threads"] = sum(names.values())
    return record


def jax_gemm_ceiling(threads: int, size: int, cpus: list[int] | None) -> dict:
    """Dense fp32 GEMM GFLOP/s through XLA under the same pinning (what jax_dense's products can reach)."""
    _pin(cpus)
    import jax
    import jax.numpy as jnp

    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(key_a, (size, size), jnp.float32)
    b = jax.random.normal(key_b, (size, size), jnp.float32)
    mm = jax.jit(jnp.matmul)
    mm(a, b).block_until_ready()
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        mm(a, b).block_until_ready()
        runs.append(2 * size**3 / (time.perf_counter() - t0) / 1e9)
    return {
        "jax_gemm_gflops": round(max(runs), 1),
        "jax_gemm_runs": runs,
        "xla_eigen_threads": _thread_names().get("tf_XLAEigen", 0),
        "threads_requested": threads,
    }


# -- the float64 agreement check ----------------------------------------------------------------------------
def run_check(n: int, p: float, batch: int, steps: int, seed: int, tol: float) -> int:
    """Loss and every gradient of each method vs jax_dense, float64 on both sides, same parameters."""
    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    prob = make_problem(n, p, batch, steps, seed=seed, dtype="float64", rec_scale=0.3, in_scale=1.0)
    got: dict[str, tuple[float, dict] | str] = {}
    for m in JAX_METHODS:
        try:
            fn, args, rec_key = build_jax(m, prob)
            value, grads = fn(*args)
            got[m] = (float(value), jax_grads_canonical(prob, grads, rec_key))
        except Exception as exc:
            got[m] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
    for m in CORTEXNET_METHODS:
        loss_fn, params, rec = build_cortexnet(m, prob)
        loss = loss_fn()
        loss.backward()
        got[m] = (loss.item(), torch_grads_canonical(params, rec))
        if m == "cortexnet_auto":
            got[m + f" (-> {rec.backend})"] = got.pop(m)
    ref = got["jax_dense"]
    if isinstance(ref, str):
        print(f"jax_dense failed: {ref}")
        return 1
    ref_loss, ref_grads = ref
    keys = ("rec", "w_in", "b", "w_out", "b_out")
    print(
        f"check: N = {n}, p = {p}, B = {batch}, T = {steps}, nnz = {prob['nnz']}, float64; "
        f"loss (jax_dense) = {ref_loss:.12g}; max relative error vs jax_dense = max|a - ref| / max|ref|"
    )
    head = f"{'method':<36} {'loss':>9} " + " ".join(f"{'d ' + k:>9}" for k in keys)
    print(head)
    print("-" * len(head))
    worst = 0.0
    for m, res in got.items():
        if m == "jax_dense":
            continue
        if isinstance(res, str):
            print(f"{m:<36} failed: {res}")
            worst = float("inf")
            continue
        loss, grads = res
        errs = [abs(loss - ref_loss) / abs(ref_loss)]
        for k in keys:
            scale = float(np.max(np.abs(ref_grads[k]))) or 1.0
            errs.append(float(np.max(np.abs(grads[k] - ref_grads[k]))) / scale)
        worst = max(worst, *errs)
        print(f"{m:<36} " + " ".join(f"{e:>9.1e}" for e in errs))
    ok = worst <= tol
    print(f"worst {worst:.1e}: {'agree' if ok else 'DISAGREE'} (tolerance {tol:g})")
    return 0 if ok else 1


# -- driver side --------------------------------------------------------------------------------------------
def estimate_case_gb(method: str, n: int, nnz: int, batch: int, steps: int) -> float:
    """Rough peak memory of a case (to skip what cannot fit): the dominant tensors only."""
    states = steps * batch * n * 4 * 6
    if method == "jax_dense":  # W, mask, W*M, its transpose, the gradient (+ host copies at setup)
        return (n * n * 25 + states) / 1e9
    if method in ("jax_bcsr", "jax_bcoo"):  # values, indices, gradient, gathered (nnz, B) products
        return (nnz * (40 + 3 * 4 * batch) + states) / 1e9 + 0.4
    from cortexnet.sparse import choose_backend

    backend = method.removeprefix("cortexnet_")
    if backend == "auto":
        backend = choose_backend(n, n, nnz, batch_hint=batch)
    return estimate_gb(backend, n, nnz, batch, steps) + nnz * 24 / 1e9  # + the NumPy problem


def fmt_table(records: list[dict]) -> str:
    head = (
        f"{'method':<23} {'N':>6} {'p':>5} {'B':>4} {'ms':>10} {'t / jax_dense':>13} {'trainMB':>8} "
        f"{'peakMB':>7}  note"
    )
    rows = [head, "-" * len(head)]
    for r in records:
        ms = f"{r['ms']:.1f}" if r.get("ms") else "-"
        ratio = f"{r['ratio_to_jax_dense']:.3f}" if r.get("ratio_to_jax_dense") else "-"
        tp = f"{r['train_peak_mb']:.0f}" if r.get("train_peak_mb") else "-"
        pk = f"{r['peak_mb']:.0f}" if r.get("peak_mb") else "-"
        notes = []
        if r.get("status") != "ok":
            notes.append(f"{r.get('status')}: {r.get('failure') or r.get('error') or r.get('note', '')}")
        elif r.get("note"):
            notes.append(r["note"])
        if r.get("others_cpu_share", 0) > 0.05:
            notes.append(f"contended ({100 * r['others_cpu_share']:.0f}% CPU used by others)")
        rows.append(
            f"{r['method']:<23} {r['n']:>6} {r['p']:>5} {r['b']:>4} {ms:>10} {ratio:>13} {tp:>8} {pk:>7}  "
            + "; ".join(notes)
        )
    return "\n".join(rows)


def _versions() -> dict:
    out = {}
    for pkg in ("jax", "jaxlib", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", nargs=2, metavar=("KIND", "JSON"), help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=10_000, help="hidden nodes")
    ap.add_argument("--p", type=float, nargs="+", default=[0.1], help="connection probabilities")
    ap.add_argument("--b", type=int, default=32, help="batch size")
    ap.add_argument("--steps", type=int, default=28, help="time steps T")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--seed", type=int, default=0, help="seed of the mask, parameters and batch")
    ap.add_argument("--threads", type=int, default=2, help="threads on each side (see the module docstring)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per case (median reported)")
    ap.add_argument("--case-timeout", type=float, default=600.0, help="seconds per case (subprocess)")
    ap.add_argument("--case-budget", type=float, default=60.0, help="seconds of timed repeats per case")
    ap.add_argument("--max-wait", type=float, default=60.0, help="seconds to wait for an idle CPU per case")
    ap.add_argument("--ceiling-size", type=int, default=4096, help="GEMM size of the ceilings (0: skip)")
    ap.add_argument("--check", action="store_true", help="float64 agreement check (N = 50, T = 5, B = 4)")
    ap.add_argument("--check-tol", type=float, default=1e-4, help="max relative error the check accepts")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    if args.worker:
        kind, payload = args.worker[0], json.loads(args.worker[1])
        if kind == "ceilings":
            _pin(payload["cpus"])
            rec = measure_ceilings(
                payload["threads"], payload["size"], min(256, max(16, payload["size"] // 16))
            )
        elif kind == "jax_gemm":
            rec = jax_gemm_ceiling(payload["threads"], payload["size"], payload["cpus"])
        else:
            rec = run_case(**payload)
        print(json.dumps(rec), flush=True)
        return 0

    if _versions()["jax"] is None:
        raise SystemExit(NEED_JAX)
    sys.path.insert(0, str(ROOT))
    if args.check:
        return run_check(50, args.p[0], 4, 5, args.seed, args.check_tol)

    t_run = time.perf_counter()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS / f"peer_jax-{stamp}.json"
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cpus = allowed[: args.threads] if len(allowed) > args.threads else allowed
    xla_flags = " ".join(filter(None, [os.environ.get("XLA_FLAGS"), "--xla_cpu_multi_thread_eigen=true"]))
    env = {"XLA_FLAGS": xla_flags, "OMP_NUM_THREADS": str(args.threads), "JAX_PLATFORMS": "cpu"}
    result = {
        "benchmark": "peer_jax",
        "created": stamp,
        "machine": {**machine(), **_versions()},
        "threads": args.threads,
        "thread_bounds": {
            "cpus": cpus,
            "env": env,
            "torch": "torch.set_num_threads(threads), process pinned to cpus",
            "jax": "process pinned to cpus (sched_setaffinity) before jax is imported: XLA:CPU sizes its "
            "Eigen pool from the affinity; see xla_eigen_threads in each JAX record",
        },
        "settings": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "worker"
        },
        "problem": {
            "features": FEATURES,
            "classes": CLASSES,
            "activation": "relu",
            "mask": f"numpy default_rng(seed) Bernoulli(p) off the diagonal, {MASK_CHUNK_ROWS} rows a draw",
            "init": "recurrent U(-1e-3, 1e-3), W_in U(-0.01, 0.01), b = 0, readout as nn.Linear",
            "dtype": "float32",
        },
        "loadavg_start": os.getloadavg(),
    }
    print(f"load average {os.getloadavg()}; threads {args.threads} on CPUs {cpus}", flush=True)
    me = Path(__file__)
    if args.ceiling_size > 0:
        pay = {"threads": args.threads, "size": args.ceiling_size, "cpus": cpus}
        ceil = run_subprocess("ceilings", pay, 300, script=me, env=env)
        jg = run_subprocess("jax_gemm", pay, 300, script=me, env=env)
        result["ceilings"] = {**ceil, "jax": jg}
        print(
            f"ceilings ({args.ceiling_size}³ GEMM): torch {ceil.get('gemm_gflops')} GFLOP/s, XLA "
            f"{jg.get('jax_gemm_gflops')} GFLOP/s ({jg.get('xla_eigen_threads')} Eigen threads); "
            f"copy {ceil.get('copy_gbs')} GB/s",
            flush=True,
        )

    records = []
    for p in args.p:
        group = []
        for method in args.methods:
            base = {"method": method, "n": args.n, "p": p, "b": args.b, "steps": args.steps}
            nnz = round(p * args.n * (args.n - 1))
            need, avail = estimate_case_gb(method, args.n, nnz, args.b, args.steps), _mem_available_gb()
            if need > 0.8 * avail:
                group.append({**base, "status": "skipped", "note": f"does not fit (needs ~{need:.0f} GB)"})
                print(f"skip {method} p={p}: needs ~{need:.1f} GB of {avail:.1f} available", flush=True)
                continue
            payload = {
                "method": method,
                "n": args.n,
                "p": p,
                "batch": args.b,
                "steps": args.steps,
                "seed": args.seed,
                "repeats": args.repeats,
                "budget_s": min(args.case_budget, 0.6 * args.case_timeout),
                "threads": args.threads,
                "cpus": cpus,
            }
            waited = wait_for_quiet(args.max_wait)
            load = os.getloadavg()[0]
            print(f"run {method} p={p} (load {load:.2f}, waited {waited:.0f}s) ...", end=" ", flush=True)
            rec = run_subprocess("case", payload, args.case_timeout, script=me, env=env)
            rec = {**base, **rec, "loadavg_start": load, "waited_for_quiet_s": round(waited, 1)}
            if rec.get("failure"):
                rec["status"] = "failed"
            elif rec["status"] == "timeout":
                rec["note"] = f"exceeded the {args.case_timeout:.0f}s limit"
            if rec["status"] == "ok":
                print(f"{rec['ms']:.1f} ms, train peak {rec['train_peak_mb']:.0f} MB", flush=True)
            else:
                print(rec["status"], rec.get("failure") or rec.get("error", ""), flush=True)
            group.append(rec)
        ref = next((r for r in group if r["method"] == "jax_dense" and r.get("status") == "ok"), None)
        shas = {r["connectivity_sha1"] for r in group if r.get("connectivity_sha1")}
        for r in group:
            if r["method"] == "cortexnet_auto" and r.get("backend"):
                r["note"] = f"auto -> {r['backend']}"
            if ref and r.get("status") == "ok":
                r["ratio_to_jax_dense"] = round(r["ms"] / ref["ms"], 4)
                r["speedup_vs_jax_dense"] = round(ref["ms"] / r["ms"], 3)
                if r.get("loss") is not None and ref.get("loss") is not None:
                    r["loss_rel_diff_vs_jax_dense"] = abs(r["loss"] - ref["loss"]) / abs(ref["loss"])
                    if r["loss_rel_diff_vs_jax_dense"] > 1e-4:
                        r["note"] = (r.get("note", "") + " LOSS DIFFERS from jax_dense").strip()
            if len(shas) > 1:
                r["note"] = (r.get("note", "") + " CONNECTIVITY DIFFERS between workers").strip()
        records.extend(group)

    return finish_run(result, records, out, t_run, fmt_table)


if __name__ == "__main__":
    raise SystemExit(main())
