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
    echo "error: input folder $IN does not exist" >&2
    exit 2
fi
# absolute paths: the scoring runs inside the work folder, so relative IN / OUT must not depend on it
IN=$(CDPATH= cd -- "$IN" && pwd -P)
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
# the physical absolute path of a folder that may not exist yet (its nearest existing parent resolved)
abspath() {
    if [ -d "$1" ]; then (CDPATH= cd -- "$1" && pwd -P); else
        _p=$(abspath "$(dirname -- "$1")") && printf '%s/%s\n' "${_p%/}" "$(basename -- "$1")"
    fi
}
OUT=$(abspath "$OUT")
case "$OUT/" in
    "$IN"/*) echo "error: the output folder $OUT is the input folder $IN or lies inside it; choose another" >&2; exit 2 ;;
esac
case "$IN/" in
    "$OUT"/*) echo "error: the input folder $IN lies inside the output folder $OUT; choose another" >&2; exit 2 ;;
esac
mkdir -p "$OUT" 2>/dev/null || { echo "error: cannot create the output folder $OUT" >&2; exit 2; }
WORK=$(mktemp -d "$OUT/.mood-dpa-work.XXXXXX") || { echo "error: cannot write in the output folder $OUT" >&2; exit 2; }
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
export TMPDIR="$WORK" TMP="$WORK" TEMP="$WORK" HOME="$WORK"
export XDG_CACHE_HOME="$WORK/cache" XDG_CONFIG_HOME="$WORK/config" MPLCONFIGDIR="$WORK/mpl"
export TORCHINDUCTOR_CACHE_DIR="$WORK/inductor" TRITON_CACHE_DIR="$WORK/triton" CUDA_CACHE_PATH="$WORK/cuda"
export PYTHONDONTWRITEBYTECODE=1 PYTHONPYCACHEPREFIX="$WORK/pycache" MOOD_DPA_QUIET=1
cd "$WORK"
# predict marks OUT as a mood-dpa folder (.mood-dpa); the challenge's OUT holds predictions only, so a
# marker this run made is removed at the end
MARKED=0
[ -e "$OUT/.mood-dpa" ] && MARKED=1
set +e
if [ -n "${MOOD_DPA_DEVICE:-}" ]; then
    "$BIN" predict --model "$MODEL" --task "$TASK" -i "$IN" -o "$OUT" --no-record --device "$MOOD_DPA_DEVICE"
else
    "$BIN" predict --model "$MODEL" --task "$TASK" -i "$IN" -o "$OUT" --no-record
fi
RC=$?
[ "$MARKED" -eq 0 ] && rm -f "$OUT/.mood-dpa"
cd /
cleanup
exit "$RC"
