#!/usr/bin/env bash
# The recommendation table of the README and leaderboard.md, on SYNTHETIC GTZAN (fault-filtered
# test split), from scratch: train the genre model (resnet_gru: the quickstart's config at the
# full width it had when the results were written, 32-64-128-128 channels, hop 512, 10 epochs) on each
# transform and the tagging model (resnet_vit, synthetic MTAT), publish them, index the same
# synthetic GTZAN folder with each genre model alone and with genre + tagging model, and score
# every library and feature choice against the random and MFCC baselines.
#   bash benchmarks/recommend_synthetic_gtzan.sh [OUT]      (about 25 minutes on 2 CPU cores)
set -euo pipefail
OUT=${1:-runs/recommend}
RESULTS=benchmarks/results/recommend_synthetic_gtzan.jsonl
mkdir -p "$OUT"
[ -d "$OUT/synthetic_gtzan/genres_original" ] || musiczoo synth gtzan "$OUT/synthetic_gtzan" --seconds 4
[ -d "$OUT/synthetic_mtat" ] || musiczoo synth mtat "$OUT/synthetic_mtat" --n-clips 500 --seconds 10 --seed 0

train() {  # name config [overrides...]: fit, test with the best checkpoint, publish
  local name=$1 config=$2; shift 2
  [ -f "$OUT/models/$name/model.safetensors" ] && return
  musiczoo fit --config "$config" --trainer.default_root_dir="$OUT/train/$name" "$@"
  local best; best=$(ls "$OUT/train/$name"/checkpoints/best-*.ckpt)
  musiczoo test --config "$config" --trainer.default_root_dir="$OUT/train/$name" --ckpt_path="$best" "$@"
  musiczoo publish "$best" "$OUT/models/$name"
}
for transform in mel mfcc stft; do
  train "gtzan_$transform" benchmarks/configs/quickstart.yaml --model.transform="$transform" \
    --model.transform_params='{"hop_length": 512}' --model.model_params='{"channels": [32, 64, 128, 128]}' \
    --model.time_mask=16 --trainer.max_epochs=10 \
    --data.init_args.root="$OUT/synthetic_gtzan" --data.init_args.cache_dir="$OUT/cache"
done
train mtat_tagging benchmarks/configs/mtat_synthetic_tiny.yaml --trainer.max_epochs=15 \
  --data.init_args.root="$OUT/synthetic_mtat" --data.init_args.cache_dir="$OUT/cache"

MUSIC="$OUT/synthetic_gtzan/genres_original"
for transform in mel mfcc stft; do
  musiczoo index "$OUT/models/gtzan_$transform" "$MUSIC" --out "$OUT/library_$transform"
done
musiczoo index "$OUT/models/gtzan_mel" "$OUT/models/mtat_tagging" "$MUSIC" --out "$OUT/library_mel_tagging"
rm -f "$RESULTS"
musiczoo recommend-eval "$OUT"/library_mel "$OUT"/library_mfcc "$OUT"/library_stft "$OUT"/library_mel_tagging \
  --dataset gtzan --results "$RESULTS"
musiczoo leaderboard benchmarks/results/synthetic_cpu.jsonl "$RESULTS" benchmarks/results/real_gtzan_excerpts_cpu.jsonl \
  benchmarks/results/recommend_real_gtzan_excerpts.jsonl benchmarks/results/deam_synthetic_cpu.jsonl --out leaderboard.md
