#!/usr/bin/env bash
# Every GPU check of mood-dpa in one run (a lent GPU is minutes, not hours), results in $OUT/results.tgz:
#   1. bench_inference.py --device cuda --size 256 --bf16 (the seed's 3-axis C=128 ensemble on a 256^3 volume);
#   2. bench_training.py --device cuda in bf16 (one training step per case, against the matmul floor);
#   3. a short training of the seed's brain/pixel/axis_0 config (128x128, C = d = 128, batch 64) on 128^3
#      phantoms: slices/s and the validation loss it reached;
#   4. the DPA quality sweep (bench_quality.py: 150-4800 steps/axis, C 16/32/64, brain phantoms; the abdomen
#      sweep runs on a CPU) with the trainings side by side on the one GPU, last and stopped at BUDGET_S seconds in all
#      (timed benchmarks first, so the sweep never shares the GPU with them).
# Usage (from the repository root, the package importable, e.g. PYTHONPATH=src):
#   OUT=/tmp/gpu bash benchmarks/gpu_checks.sh            # the real run (BUDGET_S=560 seconds at most)
#   SMALL=1 OUT=/tmp/gpu bash benchmarks/gpu_checks.sh    # the same steps at toy sizes, on a CPU (a dry run)
set -uo pipefail
OUT=${OUT:?set OUT to the folder for the results}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
RES=$(mktemp -d)  # every result file; packed into $OUT/results.tgz after each step (few files travel back)
export PYTHONUNBUFFERED=1 MOOD_DPA_QUIET=1
WORK=$(mktemp -d)
SMALL=${SMALL:-}
if [ -n "$SMALL" ]; then
  DEV=cpu; Q="--widths 8 --budgets 20 --train 12 --test 3 --size 32 --simclr-steps 5 --jobs 2 --threads 1"
  QA="$Q"; INF="--device cpu --size 32 --slice-step 8 --channels 8 --repeat 1"; TRN="--device cpu --steps 1 --seed-batch 1"
  SEED_SIZE=32; SEED_VOLS=10; SEED_STEPS=4; SEED_SET="--set model.channels=8 --set model.latent=8 --set optim.batch_size=4"
else
  DEV=cuda; Q="--widths 16 32 64 --budgets 150 300 600 1200 2400 4800 --jobs 9 --threads 1 --device cuda"
  QA=""  # the abdomen sweep runs on a CPU (bench_quality.py --kind abdom): the GPU time goes to the brain grid
  INF="--device cuda --size 256 --bf16"; TRN="--device cuda --steps 10"
  SEED_SIZE=128; SEED_VOLS=24; SEED_STEPS=1500; SEED_SET=""
fi
step() { tar czf "$OUT/results.tgz" -C "$RES" . 2>/dev/null; echo; echo "=== $1 ($(date +%T))"; }

step "device"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, os; print('torch', torch.__version__, '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA', '|', os.cpu_count(), 'CPU cores')"
} 2>&1 | tee "$RES/device.txt"

step "1. inference, 256^3, bf16"
timeout 150 $PY benchmarks/bench_inference.py $INF --json "$RES/inference.json" 2>&1 | tee "$RES/inference.log"

step "2. training throughput (bf16)"
timeout 120 $PY benchmarks/bench_training.py $TRN --precision bf16 --json "$RES/training_bf16.json" 2>&1 | tail -12

step "3. the seed's brain/pixel/axis_0 config, $SEED_STEPS steps on ${SEED_SIZE}^3 phantoms"
M="$PY -m mood_dpa"
$M phantoms -o "$WORK/seed/vols" --kind brain --count $SEED_VOLS --size $SEED_SIZE --seed 0 > /dev/null &&
$M folds -i "$WORK/seed/vols" -o "$WORK/seed/folds.csv" --n-folds 5 > /dev/null &&
$M slices -i "$WORK/seed/vols" -o "$WORK/seed/axis_0" --axis 0 --size $SEED_SIZE > /dev/null &&
timeout 150 $M train src/mood_dpa/configs/brain/pixel/axis_0.yaml --accelerator $DEV \
  --set run_dir="$WORK/seed/run" --set data.stores="[$WORK/seed/axis_0]" --set data.folds="$WORK/seed/folds.csv" \
  --set model.size=$SEED_SIZE --set loss.vgg=null --set optim.max_steps=$SEED_STEPS \
  --set optim.val_every=$((SEED_STEPS / 3)) --set trainer.checkpoint_every=$SEED_STEPS $SEED_SET 2>&1 | tail -5
cp "$WORK/seed/run/summary.json" "$RES/seed_train_summary.json" 2>/dev/null && cat "$RES/seed_train_summary.json"
LEFT=$(( ${BUDGET_S:-560} - SECONDS ))
step "4. quality sweep (stopped after ${LEFT} s)"
timeout $LEFT $PY benchmarks/bench_quality.py -o "$WORK/q_brain" $Q > "$RES/quality_brain.log" 2>&1 &
P1=$!
P2=""
if [ -n "$QA" ]; then
  timeout $LEFT $PY benchmarks/bench_quality.py -o "$WORK/q_abdom" $QA > "$RES/quality_abdom.log" 2>&1 &
  P2=$!
fi
wait $P1; echo "brain sweep exit $?"; [ -n "$P2" ] && { wait $P2; echo "abdomen sweep exit $?"; }
for k in brain abdom; do
  [ -f "$RES/quality_$k.log" ] || continue
  cp "$WORK/q_$k/quality.json" "$RES/quality_$k.json" 2>/dev/null
  cp "$WORK/q_$k/quality.png" "$RES/quality_$k.png" 2>/dev/null
  sed -n '/^DPA quality/,$p' "$RES/quality_$k.log"
done

step "done"
