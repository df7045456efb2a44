#!/usr/bin/env bash
# Link the GTZAN excerpts (a folder of the 10 genre folders) and Sturm's artist index into
# runs/bench/data/gtzan_excerpts, the root benchmarks/grids/real_gtzan_excerpts_cpu.yaml reads.
# Nothing is copied: the recordings stay where they are, and are never committed.
#   bash benchmarks/real_gtzan_excerpts.sh EXCERPTS_FOLDER [GTZANindex.txt]
# Without the index file, `musiczoo download gtzan --lists-only` fetches it (checked by its SHA-256).
set -euo pipefail
excerpts=$(realpath "${1:?usage: $0 EXCERPTS_FOLDER [GTZANindex.txt]}")
root=runs/bench/data/gtzan_excerpts
mkdir -p "$root/splits"
for genre in blues classical country disco hiphop jazz metal pop reggae rock; do
  [ -d "$excerpts/$genre" ] || { echo "$excerpts/$genre: no such genre folder" >&2; exit 2; }
  [ -L "$root/$genre" ] && rm "$root/$genre"   # never write through a linked folder into the excerpts
  mkdir -p "$root/$genre"   # a link per file, not per folder: `musiczoo index` does not follow linked folders
  for clip in "$excerpts/$genre"/*.wav; do ln -sf "$clip" "$root/$genre/$(basename "$clip")"; done
done
if [ $# -ge 2 ]; then
  ln -sf "$(realpath "$2")" "$root/splits/GTZANindex.txt"
else
  musiczoo download gtzan --lists-only --root "$root"
fi
echo "$root: $(find -L "$root" -name '*.wav' | wc -l) excerpts, artist index $(realpath "$root/splits/GTZANindex.txt")"
