#!/usr/bin/env bash
# The recommendation rows of leaderboard.md's REAL GTZAN excerpts section, after the grid
# (benchmarks/grids/real_gtzan_excerpts_cpu.yaml): for each transform, the architecture with the
# best mean test accuracy over seeds, its seed-0 checkpoint published, indexes the 409 excerpts,
# and recommend-eval scores the artist split's test part (77 clips; a query's neighbours are
# other artists' test clips) against the random and MFCC baselines.
#   bash benchmarks/recommend_real_gtzan_excerpts.sh [OUT]      (a few minutes on 2 CPU cores)
set -euo pipefail
OUT=${1:-runs/recommend_real}
GRID=benchmarks/results/real_gtzan_excerpts_cpu.jsonl
RESULTS=benchmarks/results/recommend_real_gtzan_excerpts.jsonl
MUSIC=runs/bench/data/gtzan_excerpts   # made by benchmarks/real_gtzan_excerpts.sh
LABEL="REAL GTZAN excerpts (409 x 2-3 s, artist-disjoint split), test part"
mkdir -p "$OUT"
libraries=()
for transform in mel mfcc stft; do
  checkpoint=$(python - "$GRID" "$transform" <<'PY'
import json, statistics, sys
records = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
cells = [r for r in records if r.get("kind") == "bench" and r["status"] == "ok" and r["transform"] == sys.argv[2]]
accuracy = {}
for r in cells:
    accuracy.setdefault(r["architecture"], []).append(r["metrics"]["test/acc"])
best = max(accuracy, key=lambda a: statistics.fmean(accuracy[a]))
print(next(r["checkpoint"] for r in cells if r["architecture"] == best and r["seed"] == 0))
PY
)
  echo "$transform: $checkpoint"
  [ -f "$OUT/models/$transform/model.safetensors" ] || musiczoo publish "$checkpoint" "$OUT/models/$transform"
  musiczoo index "$OUT/models/$transform" "$MUSIC" --out "$OUT/library_$transform"
  libraries+=("$OUT/library_$transform")
done
rm -f "$RESULTS"
musiczoo recommend-eval "${libraries[@]}" --dataset gtzan --gtzan-split artist --label "$LABEL" --results "$RESULTS"
