#!/usr/bin/env bash
# Table 2's runs on one GPU (one NVIDIA H200 for the committed 3-level seeds 1-2): one
# `mgiad reproduce --shard i/TOTAL` process per run, all at once, for at most DEADLINE seconds; then
# each is stopped at a step boundary (SIGTERM: it saves last.pt) and the run folders this call wrote
# are packed into $OUT, for `mgiad reproduce` to continue anywhere.
#   3-level seeds 1-2 (the defaults):  bash docs/results/fashion-mnist-3level/gpu/run_seeds.sh
#   4-level seed 0, its six GPU rows:  LEVELS=4 SEEDS=1 TOTAL=8 SHARDS="0 1 2 3 5 6" \
#       RESULTS=docs/results/fashion-mnist-4level bash docs/results/fashion-mnist-3level/gpu/run_seeds.sh
# Back in $OUT: runs.tgz in parts of 15 MiB (runs.tgz.part-aa, ...: $OUT returns at most 8 files of
# 16 MiB, 64 MiB in all); unpack with `cat runs.tgz.part-* | tar xz`. A last.pt over 40 MiB
# (ResNet18's: weights and momentum, 90 MB) stays behind: such a run comes back only finished.
# Needs: the Fashion-MNIST files in .gpu-data/ (a copy of the data folder), $OUT, SHARDS.
set -u
start=$SECONDS
DEADLINE=${DEADLINE:-510}
DEVICE=${DEVICE:-cuda}
SHARDS=${SHARDS:-"5 6 9 10 11 12 13 14"}  # 3-level: 0-4 seed 0, done; 7, 8: seed 1 of g_s=4, 8 on the CPU
RESULTS=${RESULTS:-docs/results/fashion-mnist-3level}
LEVELS=${LEVELS:-3} SEEDS=${SEEDS:-3} TOTAL=${TOTAL:-15}
WORK=$(mktemp -d)  # scratch: start marker, shard logs, the archive
touch $WORK/start
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MGIAD_KERNELS=0
[ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'python', __import__('sys').version.split()[0])"
# the runs record data_dir ../shared/data: give it the same name here
DATA=../shared/data
if [ ! -e $DATA ]; then mkdir -p ../shared && ln -s "$PWD/.gpu-data" $DATA || DATA=.gpu-data; fi
# MPS lets the processes' small kernels run side by side instead of time-slicing the GPU
if [ "$DEVICE" = cuda ] && command -v nvidia-cuda-mps-control >/dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=$WORK/mps-pipe CUDA_MPS_LOG_DIRECTORY=$WORK/mps-log
  mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
  if nvidia-cuda-mps-control -d && timeout 60 python3 -c "import torch; torch.ones(1, device='cuda').sum().item()"
  then echo "MPS: on"
  else echo quit | nvidia-cuda-mps-control; unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY; echo "MPS: off"
  fi
fi
if [ -z "${SKIP_CHECK:-}" ]; then timeout 150 python3 "$(dirname "$0")/check_cuda.py" $DEVICE; check=$?; else check=0; fi
RUN=(python3 -m mgiad)
if [ $check != 0 ]; then  # fast path failed here (rc $check): train through the reference path
  echo "check_cuda rc=$check: impl='fast' disabled, the reference path trains"
  RUN=(python3 -c "import sys, mgiad.layers.fast as f; f.applies = lambda *a: False
f.batch_norm_relu = lambda *a: None
from mgiad.cli import main; sys.exit(main(sys.argv[1:]))")
fi
mkdir -p $WORK/shard-logs
pids=()
for i in $SHARDS; do
  "${RUN[@]}" reproduce --table 2 --levels $LEVELS --dataset fashion-mnist --data-dir $DATA --epochs 30 \
    --seeds $SEEDS --runs $RESULTS/runs --device $DEVICE --no-amp --channels-last --no-progress \
    --shard $i/$TOTAL > $WORK/shard-logs/shard-$i.log 2>&1 &
  pids+=($!)
done
echo "$(( SECONDS - start )) s: ${#pids[@]} runs started"
running() { local p; for p in "${pids[@]}"; do kill -0 $p 2>/dev/null && echo $p; done; }
while [ $(( SECONDS - start )) -lt $DEADLINE ] && [ -n "$(running)" ]; do sleep 5; done
echo "$(( SECONDS - start )) s: stopping $(running | wc -l) runs at a step boundary"
kill -TERM $(running) 2>/dev/null
for _ in $(seq 60); do [ -z "$(running)" ] && break; sleep 1; done
kill -KILL $(running) 2>/dev/null
[ "$DEVICE" = cuda ] && [ -n "${CUDA_MPS_PIPE_DIRECTORY:-}" ] && echo quit | nvidia-cuda-mps-control
dirs=$(find $RESULTS/runs/table2 -mindepth 2 -maxdepth 2 -name train.log -newer $WORK/start -printf '%h\n' | sort)
for d in $dirs; do
  echo "$(basename $d): $(cat $d/metrics.jsonl 2>/dev/null | wc -l) epochs; $(tail -c 300 $d/metrics.jsonl 2>/dev/null | tail -1 | cut -c1-160)"
done
tail -n 3 $WORK/shard-logs/*.log
cp -r $WORK/shard-logs $RESULTS/runs/table2/gpu-shard-logs
excludes=(--exclude best.pt --exclude .lock)
for f in $( [ -n "$dirs" ] && find $dirs -name last.pt -size +40M); do
  echo "left behind (over 40 MiB): $f"; excludes+=(--exclude "$f")
done
tar czf $WORK/runs.tgz "${excludes[@]}" $RESULTS/runs/table2/gpu-shard-logs $dirs
split -b 15M $WORK/runs.tgz $OUT/runs.tgz.part-
echo "$(( SECONDS - start )) s: done, $(du -h $WORK/runs.tgz | cut -f1) back in $(ls $OUT/runs.tgz.part-* | wc -l) parts"
