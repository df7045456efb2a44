#!/usr/bin/env bash
# Transfer learning on SYNTHETIC data (the table of docs/training.md#transfer-learning): train a
# crnn genre model on synthetic GTZAN and publish it, write a small folder dataset with other
# labels from another seed's synthetic GTZAN, then run benchmarks/grids/transfer_synthetic.yaml:
# scratch, fine-tuned and linear-probe cells at the same epoch budget, three seeds each.
#   bash benchmarks/transfer_synthetic.sh      (minutes on 2 CPU cores; paths are the grid's, under runs/transfer)
set -euo pipefail
OUT=runs/transfer
GRID=benchmarks/grids/transfer_synthetic.yaml
RESULTS=benchmarks/results/transfer_synthetic.jsonl
mkdir -p "$OUT"
[ -d "$OUT/source_gtzan/genres_original" ] || \
  musiczoo synth gtzan "$OUT/source_gtzan" --seconds 2 --sample-rate 16000 --clips-per-genre 40 --seed 0
[ -d "$OUT/target_gtzan/genres_original" ] || \
  musiczoo synth gtzan "$OUT/target_gtzan" --seconds 2 --sample-rate 16000 --clips-per-genre 12 --seed 1

# The source: 10 genres, the same front-end and sample rate as the grid's cells.
if [ ! -f "$OUT/models/gtzan_crnn/model.safetensors" ]; then
  musiczoo fit --config benchmarks/configs/quickstart.yaml --seed_everything=0 \
    --trainer.default_root_dir="$OUT/source" --trainer.max_epochs=8 --trainer.log_every_n_steps=5 \
    --model.architecture=crnn --model.model_params='{}' --model.spec_augment=false --model.lr=0.003 \
    --model.transform_params='{"n_fft": 512, "hop_length": 256, "n_mels": 64}' \
    --data.init_args.root="$OUT/source_gtzan" --data.init_args.split=stratified \
    --data.init_args.sample_rate=16000 --data.init_args.chunk_seconds=1.0 --data.init_args.cache_dir="$OUT/cache"
  musiczoo publish "$(ls "$OUT"/source/checkpoints/best-*.ckpt)" "$OUT/models/gtzan_crnn"
fi

# The target: three labels the source never saw, each two of its genres (other clips: another seed).
if [ ! -d "$OUT/styles" ]; then
  for pair in calm:classical,jazz dance:disco,hiphop loud:metal,rock; do
    label=${pair%%:*}; mkdir -p "$OUT/styles/$label"
    IFS=, read -ra genres <<< "${pair#*:}"
    for genre in "${genres[@]}"; do cp "$OUT/target_gtzan/genres_original/$genre"/*.wav "$OUT/styles/$label/"; done
  done
fi

musiczoo bench "$GRID"
musiczoo leaderboard "$RESULTS" --out "$OUT/leaderboard.md"
echo "table: $OUT/leaderboard.md"
