#!/usr/bin/env bash
# The recommendation rows of leaderboard.md's REAL GTZAN excerpts section, after the grid
# (benchmarks/grids/real_gtzan_excerpts_cpu.yaml): for each transform, the architecture with the
# best mean test accuracy over seeds, its seed-0 checkpoint published, indexes the 409 excerpts,
# and recommend-eval scores the artist split's test part (77 clips; a query's neighbours are
# other artists' test clips) against the random and MFCC baselines.
#   bash benchmarks/recommend_real_gtzan_excerpts.sh [OUT]      (a few minutes on 2 CPU cores)
set -euo pipefail
OUT=${1:-runs/recommend_real}
GRID=benchmarks/grids/real_gtzan_excerpts_cpu.yaml
RESULTS=benchmarks/results/recommend_real_gtzan_excerpts.jsonl
MUSIC=runs/bench/data/gtzan_excerpts   # made by benchmarks/real_gtzan_excerpts.sh
LABEL="REAL GTZAN excerpts (409 x 2-3 s, artist-disjoint split), test part"
mkdir -p "$OUT"
libraries=()
for transform in mel mfcc stft; do
  read -r cell checkpoint < <(musiczoo bench "$GRID" --best "$transform")
  if [ ! -f "$checkpoint" ]; then   # runs/ was cleaned: train the cell again (its new record is the one shown)
    python -m benchmarks.cell "$GRID" "$cell"
    read -r cell checkpoint < <(musiczoo bench "$GRID" --best "$transform")
  fi
  echo "$transform: $checkpoint"
  [ -f "$OUT/models/$transform/model.safetensors" ] || musiczoo publish "$checkpoint" "$OUT/models/$transform"
  musiczoo index "$OUT/models/$transform" "$MUSIC" --out "$OUT/library_$transform"
  libraries+=("$OUT/library_$transform")
done
rm -f "$RESULTS"
musiczoo recommend-eval "${libraries[@]}" --dataset gtzan --gtzan-split artist --label "$LABEL" --results "$RESULTS"
