#!/bin/sh
# Shared body of the four MOOD entry points run_{pixel,sample}_{brain,abdom}.sh.
#   usage: sh mood_run.sh TASK DATASET IN OUT      (TASK: pixel|sample, DATASET: brain|abdom)
# Scores every *.nii.gz / *.nii in IN with the model of TASK_DATASET and writes MOOD outputs to OUT:
# pixel -> OUT/<same name> (float32 NIfTI, scores in [0,1]); sample -> OUT/<name>.txt (one float).
# The container's root file system is read-only: every temporary file (TMPDIR, HOME, caches) goes
# into a fresh folder under OUT, which is removed at the end, also on failure or interruption.
# Environment (optional): MOOD_DPA_MODELS (default: models/ beside this script), MOOD_DPA_BIN
# (default: mood-dpa on PATH), MOOD_DPA_DEVICE (default: automatic, a GPU when present).
set -eu
if [ "$#" -ne 4 ]; then
    echo "usage: sh run_<task>_<dataset>.sh IN OUT" >&2
    exit 2
fi
TASK=$1
DATASET=$2
IN=$3
OUT=$4
HERE=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
MODELS=${MOOD_DPA_MODELS:-$HERE/models}
BIN=${MOOD_DPA_BIN:-mood-dpa}
if [ ! -d "$IN" ]; then
    echo "input folder $IN does not exist" >&2
    exit 2
fi
MODEL=""
for candidate in "$MODELS/${TASK}_${DATASET}/model.yaml" "$MODELS/${TASK}_${DATASET}/model.npz"; do
    if [ -f "$candidate" ]; then
        MODEL=$candidate
        break
    fi
done
if [ -z "$MODEL" ]; then
    echo "no model for ${TASK}_${DATASET} under $MODELS" >&2
    exit 2
fi
mkdir -p "$OUT"
WORK=$(mktemp -d "$OUT/.mood-dpa-work.XXXXXX")
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM
export TMPDIR="$WORK" TMP="$WORK" TEMP="$WORK" HOME="$WORK"
export XDG_CACHE_HOME="$WORK/cache" XDG_CONFIG_HOME="$WORK/config" MPLCONFIGDIR="$WORK/mpl"
export TORCHINDUCTOR_CACHE_DIR="$WORK/inductor" TRITON_CACHE_DIR="$WORK/triton" CUDA_CACHE_PATH="$WORK/cuda"
export PYTHONDONTWRITEBYTECODE=1 PYTHONPYCACHEPREFIX="$WORK/pycache" MOOD_DPA_QUIET=1
cd "$WORK"
if [ -n "${MOOD_DPA_DEVICE:-}" ]; then
    "$BIN" predict --model "$MODEL" --task "$TASK" -i "$IN" -o "$OUT" --no-record --device "$MOOD_DPA_DEVICE"
else
    "$BIN" predict --model "$MODEL" --task "$TASK" -i "$IN" -o "$OUT" --no-record
fi
