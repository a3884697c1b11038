#!/usr/bin/env bash
# Fig. 6C: learning delay against network size, dense vs sparse (one run folder per size).
set -euo pipefail
for n in 1000 2000 5000 10000 20000; do
  python -m cortexnet.experiments.dale --nodes "$n" --densities 1.0 0.1 --seeds 0 1 2 --epochs 50 "$@"
done
