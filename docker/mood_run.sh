#!/bin/sh
# Shared body of the four MOOD entry points run_{pixel,sample}_{brain,abdom}.sh.
#   usage: sh mood_run.sh TASK DATASET IN OUT      (TASK: pixel|sample, DATASET: brain|abdom)
# Scores every *.nii.gz / *.nii in IN with the model of TASK_DATASET and writes MOOD outputs to OUT:
# pixel -> OUT/<same name> (float32 NIfTI, scores in [0,1]); sample -> OUT/<name>.txt (one float).
# A file in OUT with a prediction's name is replaced; anything else in OUT is kept.
# The container's root file system is read-only: every temporary file (TMPDIR, HOME, caches) and the
# predictions themselves are written into a fresh work folder OUT/.mood-dpa-work.XXXXXX; finished
# predictions are moved into OUT at the end, so OUT never holds a half-written file or a marker.
# SIGTERM (docker stop) or SIGINT stops the scoring at once: the child is stopped, the work folder
# removed, exit 130. A run killed outright (SIGKILL) leaves its work folder; the next run removes
# every work folder whose run is gone (flock tells a live one, where util-linux's flock exists).
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
# work folders of earlier runs that were killed outright: removed unless their run still holds its lock
HAVE_FLOCK=0
command -v flock >/dev/null 2>&1 && HAVE_FLOCK=1
for stale in "$OUT"/.mood-dpa-work.*; do
    [ -d "$stale" ] || continue
    if [ "$HAVE_FLOCK" -eq 1 ] && [ -e "$stale/lock" ] && ! flock -n "$stale/lock" true 2>/dev/null; then
        continue  # a live run (or its still-running child) holds it
    fi
    rm -rf "$stale"
done
WORK=$(mktemp -d "$OUT/.mood-dpa-work.XXXXXX") || { echo "error: cannot write in the output folder $OUT" >&2; exit 2; }
if [ "$HAVE_FLOCK" -eq 1 ]; then
    # fd 9 holds the lock for as long as this script or the predictor it starts lives
    exec 9>"$WORK/lock" && flock -n 9
fi
CHILD=""
cleanup() { rm -rf "$WORK"; }
stop() {
    set +e
    trap '' INT TERM
    if [ -n "$CHILD" ]; then
        kill -TERM "$CHILD" 2>/dev/null
        wait "$CHILD" 2>/dev/null
    fi
    cd /
    cleanup
    echo "interrupted ($1): scoring stopped, work folder removed; OUT keeps only the predictions moved there before" >&2
    exit 130
}
trap cleanup EXIT
trap 'stop SIGINT' INT
trap 'stop SIGTERM' TERM
export TMPDIR="$WORK" TMP="$WORK" TEMP="$WORK" HOME="$WORK"
export XDG_CACHE_HOME="$WORK/cache" XDG_CONFIG_HOME="$WORK/config" MPLCONFIGDIR="$WORK/mpl"
export TORCHINDUCTOR_CACHE_DIR="$WORK/inductor" TRITON_CACHE_DIR="$WORK/triton" CUDA_CACHE_PATH="$WORK/cuda"
export PYTHONDONTWRITEBYTECODE=1 PYTHONPYCACHEPREFIX="$WORK/pycache" MOOD_DPA_QUIET=1
cd "$WORK"
# the predictor runs in the background so that a signal reaches this shell at once (a foreground
# child would delay the trap until it ends); it writes into WORK/pred, with its marker and temporaries
set +e
if [ -n "${MOOD_DPA_DEVICE:-}" ]; then
    "$BIN" predict --model "$MODEL" --task "$TASK" -i "$IN" -o "$WORK/pred" --no-record --device "$MOOD_DPA_DEVICE" &
else
    "$BIN" predict --model "$MODEL" --task "$TASK" -i "$IN" -o "$WORK/pred" --no-record &
fi
CHILD=$!
wait "$CHILD"
RC=$?
CHILD=""
if [ "$RC" -eq 0 ]; then
    # renames within one file system: each prediction appears in OUT complete
    for f in "$WORK/pred"/*; do
        [ -e "$f" ] || continue
        mv -f "$f" "$OUT/" || { echo "error: cannot move $(basename -- "$f") into $OUT" >&2; RC=2; break; }
    done
fi
cd /
cleanup
exit "$RC"
