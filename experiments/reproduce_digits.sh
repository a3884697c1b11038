#!/usr/bin/env bash
# The reduced (embedded digits, no download) version of every figure configuration, then the reproduction
# report comparing them with the papers: python -m cortexnet.experiments.report writes experiments/README.md
# (the hand-written experiments/NOTES.md first) and experiments/figures/.
# Usage: bash experiments/reproduce_digits.sh [--quick]   (--quick: skips the four N = 10,000 Dale runs, 20-50 min each)
set -euo pipefail
cd "$(dirname "$0")/.."
out=runs/digits
run() { python -m "cortexnet.experiments.$1" --config "experiments/$2" --no-progress --out "$out"; }
run connectivity_sweep connectivity_sweep_digits.toml       # Fig. 2B/2C/3B, Tables S1
run connectivity_sweep connectivity_sweep_figS2_digits.toml # Fig. S2
run recurrent_vs_feedforward recurrent_vs_feedforward_digits.toml  # Fig. 3A
run recurrent_vs_feedforward recurrent_vs_feedforward_fig4a_digits.toml  # Fig. 4A / S4 (limited data)
run recurrent_vs_feedforward recurrent_vs_feedforward_figS3_digits.toml  # Fig. S3 (feed-forward N x p)
# Fig. 5: train, then probe every member of that run (--run-dir: a second call resumes, or reuses, it)
python -m cortexnet.experiments.recurrent_vs_feedforward --config experiments/recurrent_vs_feedforward_fig5_digits.toml \
  --no-progress --run-dir "$out/fig5"
python -m cortexnet.experiments.representations --run "$out/fig5" --out "$out"
run dale dale_fig6c_digits.toml                             # Fig. 6C
if [[ "${1:-}" != "--quick" ]]; then
  run dale dale_digits_10k.toml                             # Fig. 6B
  run dale dale_digits_10k_balanced.toml                    # Fig. 6F
  run dale dale_figS5b_digits.toml                          # Fig. S5B (sparse-to-dense)
  run dale dale_figS5c_digits.toml                          # Fig. S5C (10x inhibitory weights)
fi
run g2g g2g_digits.toml                                     # G2GNet Table I, Fig. 4A
run topologies topologies_digits.toml                       # DNM static table
run dst dst_g2g_digits.toml                                 # G2GNet Table II
run dst dst_mlp_digits.toml                                 # CHTs MLP comparison
python -m cortexnet.experiments.report "$out" --out experiments --notes experiments/NOTES.md \
  --title "Experiments: the configurations and the reproduction report"
