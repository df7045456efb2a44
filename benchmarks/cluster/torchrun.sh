#!/bin/bash
# The same training with torchrun instead of SLURM: run this on every node.
#   NNODES=2 NODE_RANK=0 MASTER=node0:29500 bash benchmarks/cluster/torchrun.sh   (on node0)
#   NNODES=2 NODE_RANK=1 MASTER=node0:29500 bash benchmarks/cluster/torchrun.sh   (on node1)
# Lightning's TorchElasticEnvironment reads the variables torchrun sets (RANK, LOCAL_RANK,
# WORLD_SIZE, MASTER_ADDR, MASTER_PORT); --trainer.num_nodes and --trainer.devices must match.
# After a crash or kill, run it again with RESUME=1 to continue from last.ckpt.
set -euo pipefail
CONFIG=${CONFIG:-benchmarks/configs/mtat_resnet_vit.yaml}
DATA=${DATA:-/data/mtat}
RUN=${RUN:-runs/mtat_resnet_vit}
NNODES=${NNODES:-1}
GPUS=${GPUS:-$(nvidia-smi --list-gpus 2>/dev/null | wc -l)}
RESUME_ARGS=()
if [ "${RESUME:-0}" = 1 ]; then RESUME_ARGS=(--ckpt_path last); fi
torchrun --nnodes "$NNODES" --nproc_per_node "$GPUS" --node_rank "${NODE_RANK:-0}" \
  --rdzv_backend c10d --rdzv_endpoint "${MASTER:-localhost:29500}" \
  -m zoo.cli fit --config "$CONFIG" \
  --data.init_args.root "$DATA" \
  --data.init_args.num_workers 8 \
  --trainer.accelerator gpu \
  --trainer.num_nodes "$NNODES" \
  --trainer.devices "$GPUS" \
  --trainer.strategy ddp \
  --trainer.precision bf16-mixed \
  --trainer.default_root_dir "$RUN" \
  "${RESUME_ARGS[@]}"
