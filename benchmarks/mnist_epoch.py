"""End-to-end time of one MNIST-shaped training epoch of the cortex-like RNN (random data: timing only).

60,000 samples of 28 x 28 (28 steps of 28 inputs), batch 100 (the authors' code), Adam (fused) at 1e-3, the
constraint projection after every step — the training loop of the paper at N = 10,000, p = 0.1 by default,
backend ``auto``. Measuring a whole epoch on a 2-core CPU takes about an hour, so by default only
``--batches`` batches are timed (after one warm-up batch) and the epoch time is **extrapolated** as
median batch time x number of batches; ``--batches 0`` runs the whole epoch. The JSON result (machine, load
average, per-batch times, whether extrapolated) goes to ``benchmarks/results/``.

    python benchmarks/mnist_epoch.py                       # N = 10,000, p = 0.1, auto, CPU, 20 batches
    python benchmarks/mnist_epoch.py --device cuda --n 20000 --batches 0
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--p", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--samples", type=int, default=60_000)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--dale", action=argparse.BooleanOptionalAction, default=False)
    ap.add_argument("--batches", type=int, default=20, help="timed batches (0: the whole epoch)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch
    from recurrent_step import machine  # benchmarks/ is on sys.path

    from cortexnet.io import atomic_write_json
    from cortexnet.layers import sparse_weights
    from cortexnet.models.cortex_rnn import CortexRNN, CortexRNNConfig
    from cortexnet.sparse import choose_backend

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    backend = args.backend
    nnz_expected = round(args.p * args.n * (args.n - 1))
    if backend == "auto":  # resolve with the real batch and device (the layer's default hint is B = 32, CPU)
        backend = choose_backend(args.n, args.n, nnz_expected, batch_hint=args.batch, device=device)
    t0 = time.perf_counter()
    config = CortexRNNConfig(n_nodes=args.n, p=args.p, dale=args.dale, backend=backend)
    model = CortexRNN(config, n_inputs=28, n_classes=10).to(device)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(args.samples, 28, 28, generator=g)
    labels = torch.randint(0, 10, (args.samples,), generator=g)
    fused = device.type in ("cpu", "cuda")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
    setup_s = time.perf_counter() - t0
    n_batches = math.ceil(args.samples / args.batch)
    timed = n_batches if args.batches <= 0 else min(args.batches + 1, n_batches)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    order = torch.randperm(args.samples, generator=g)
    times = []
    load_start = os.getloadavg()
    for i in range(timed):
        idx = order[i * args.batch : (i + 1) * args.batch]
        x, y = images[idx].to(device), labels[idx].to(device)
        sync()
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()  # also re-imposes Dale's law and the mask (cortexnet.sparse.constraints)
        sync()
        times.append(time.perf_counter() - t)
        print(f"batch {i + 1}/{timed}: {times[-1] * 1e3:.0f} ms (loss {loss.item():.3f})", flush=True)
    whole = timed == n_batches
    steady = times[1:] if len(times) > 1 else times
    med = sorted(steady)[len(steady) // 2]
    epoch_s = sum(times) if whole else med * n_batches
    result = {
        "benchmark": "mnist_epoch",
        "created": datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
        "machine": machine(),
        "device": str(device),
        "config": {"n": args.n, "p": args.p, "batch": args.batch, "samples": args.samples, "dale": args.dale},
        "backend_requested": args.backend,
        "backend": sparse_weights(model)["recurrent.rec"].backend,
        "synapses": sparse_weights(model)["recurrent.rec"].nnz,
        "threads": args.threads,
        "setup_s": round(setup_s, 1),
        "batches_per_epoch": n_batches,
        "batches_timed": len(times),
        "batch_ms": [round(t * 1e3, 1) for t in times],
        "median_batch_ms": round(med * 1e3, 1),
        "epoch_s": round(epoch_s, 1),
        "extrapolated": not whole,
        "method": "whole epoch timed"
        if whole
        else f"median of {len(steady)} timed batches (after 1 warm-up) x {n_batches} batches",
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cuda_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if device.type == "cuda"
        else None,
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
    }
    stamp = result["created"]
    out = args.out or ROOT / "benchmarks" / "results" / f"mnist_epoch-{device.type}-{stamp}.json"
    atomic_write_json(out, result)
    kind = "extrapolated from" if not whole else "measured over"
    print(
        f"\nN={args.n} p={args.p} B={args.batch} backend={result['backend']} on {device}: one epoch "
        f"{epoch_s:.0f} s ({epoch_s / 3600:.2f} h), {kind} {len(times)} batches; median batch "
        f"{med * 1e3:.0f} ms; peak {result['peak_mb']:.0f} MB -> {out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
