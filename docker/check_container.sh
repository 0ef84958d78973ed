#!/usr/bin/env bash
# Build the MOOD submission image from a demo's detectors and test it the way the organisers do
# (their scripts/test_docker.py): read-only root, no network, input mounted read-only, output mounted,
# each of the four run scripts on toy cases. Not part of the test command: it takes minutes.
#
#   bash docker/check_container.sh [--demo DIR] [--demo-abdom DIR] [--base-image IMAGE] [--torch cpu|cuda]
#                                  [--torch-wheel FILE] [--gpu] [--work DIR] [--keep-image] [--image IMAGE]
#
# --demo DIR        a `mood-dpa demo [--quick] -o DIR` folder: DIR/fit/detector.yaml is the brain
#                   detector, DIR/valset/toy the cases (default: a --quick demo made in the work folder)
# --demo-abdom DIR  the same for the abdomen slots (`mood-dpa demo --kind abdom`; default: --demo's)
# --base-image IMG  the image's FROM (default localhost/mood-dpa-base:bookworm, made from Debian's
#                   archive by docker/build_offline_base.sh when absent; python:3.11-slim needs a registry)
# --torch cpu|cuda  the Dockerfile's TORCH build argument (default cpu; cuda with --gpu)
# --torch-wheel F   install this torch wheel instead of downloading torch (mood-dpa submission --torch-wheel)
# --gpu             pass the GPU through (podman: --device nvidia.com/gpu=all, docker: --gpus all)
# --work DIR        keep everything there (default: a temporary folder, removed at the end)
# --keep-image      keep the built image (default: removed at the end)
# --image IMAGE     test this image (built earlier from the same demo folders) instead of building one
# Checks, each printed as ok/FAIL: every output's name, shape, dtype and range; nothing written outside
# /mnt/pred (the engine's diff of the container is empty; IN unchanged); `mood-dpa --version` in the
# image equals the host's; predictions equal `mood-dpa predict` on the host (max abs difference);
# `stop` mid-run exits 130 and leaves OUT empty; a run after `kill` leaves OUT clean. Prints image
# size, start-up time and seconds per volume. The host's mood-dpa: MOOD_DPA_BIN or mood-dpa on PATH.
# Exit 0 when every check passed, 1 when one failed, 2 on bad usage.
set -euo pipefail
HERE=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
DEMO="" DEMO_ABDOM="" BASE="localhost/mood-dpa-base:bookworm" TORCH="" WHEEL="" GPU=0 WORK="" KEEP_IMAGE=0 GIVEN_IMAGE=""
die() { echo "error: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --demo) DEMO=${2:?}; shift 2 ;;
        --demo-abdom) DEMO_ABDOM=${2:?}; shift 2 ;;
        --base-image) BASE=${2:?}; shift 2 ;;
        --torch) TORCH=${2:?}; shift 2 ;;
        --torch-wheel) WHEEL=${2:?}; shift 2 ;;
        --gpu) GPU=1; shift ;;
        --work) WORK=${2:?}; shift 2 ;;
        --keep-image) KEEP_IMAGE=1; shift ;;
        --image) GIVEN_IMAGE=${2:?}; KEEP_IMAGE=1; shift 2 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
[ -n "$TORCH" ] || { [ "$GPU" -eq 1 ] && TORCH=cuda || TORCH=cpu; }
case "$TORCH" in cpu|cuda) ;; *) die "--torch $TORCH: expected cpu or cuda" ;; esac
[ -z "$WHEEL" ] || [ -f "$WHEEL" ] || die "--torch-wheel $WHEEL: no such file"
BIN=${MOOD_DPA_BIN:-$(command -v mood-dpa || true)}
[ -n "$BIN" ] && [ -x "$BIN" ] || die "no host mood-dpa: put it on PATH or set MOOD_DPA_BIN"
PY=$(dirname -- "$BIN")/python
[ -x "$PY" ] || PY=python3
for d in "$DEMO" "$DEMO_ABDOM"; do
    [ -z "$d" ] && continue
    [ -f "$d/fit/detector.yaml" ] && [ -d "$d/valset/toy" ] || die "$d: not a demo folder (fit/detector.yaml, valset/toy)"
done

MADE_WORK=0
if [ -z "$WORK" ]; then WORK=$(mktemp -d "${TMPDIR:-/tmp}/mood-dpa-check.XXXXXX"); MADE_WORK=1; fi
mkdir -p "$WORK"
WORK=$(CDPATH= cd -- "$WORK" && pwd)
IMAGE=${GIVEN_IMAGE:-localhost/mood-dpa-check:$$}
RUNNING=""
cleanup() {
    [ -z "$RUNNING" ] || "$ENGINE" rm -f "$RUNNING" >/dev/null 2>&1 || true
    if [ "$KEEP_IMAGE" -eq 0 ] && [ -n "${ENGINE:-}" ]; then "$ENGINE" rmi -f "$IMAGE" >/dev/null 2>&1 || true; fi
    if [ "$MADE_WORK" -eq 1 ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM
. "$HERE/engine.sh"
pick_engine "$WORK/engine" || exit 2
FAILED=0
report() { echo "$1"; case "$1" in FAIL*) FAILED=1 ;; esac; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
echo "engine: $ENGINE ($("$ENGINE" --version)); host: $("$BIN" --version); load: $(uptime | sed 's/.*load average/load average/')"

# 1. detectors and toy cases
if [ -z "$DEMO" ]; then
    echo "making a --quick demo (a few minutes) ..."
    "$BIN" demo --quick -o "$WORK/demo" > "$WORK/demo.log" 2>&1 || { tail -5 "$WORK/demo.log"; die "the demo failed"; }
    DEMO=$WORK/demo
fi
[ -n "$DEMO_ABDOM" ] || DEMO_ABDOM=$DEMO

# 2. base image and build (skipped with --image)
image_exists() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }
build_image() {
    if ! image_exists "$BASE"; then
        if [ "$BASE" = localhost/mood-dpa-base:bookworm ]; then
            sh "$HERE/build_offline_base.sh" "$BASE"
        else
            "$ENGINE" pull "$BASE" || die "cannot pull $BASE; make a base image with docker/build_offline_base.sh"
        fi
    fi
    local submit=(submission -o "$WORK/context" --base-image "$BASE"
                  --brain-pixel "$DEMO/fit/detector.yaml" --brain-sample "$DEMO/fit/detector.yaml"
                  --abdom-pixel "$DEMO_ABDOM/fit/detector.yaml" --abdom-sample "$DEMO_ABDOM/fit/detector.yaml")
    [ -z "$WHEEL" ] || submit+=(--torch-wheel "$WHEEL")
    rm -rf "$WORK/context"
    "$BIN" "${submit[@]}"
    local build=(build --network host --build-arg "TORCH=$TORCH" -t "$IMAGE")
    [ "$ENGINE" = podman ] && build+=(--layers=false)
    if [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ]; then  # a TLS-intercepting proxy's CA, for this build only
        if [ "$ENGINE" = podman ]; then build+=(--volume "$PIP_CERT:/run/host-ca.pem:ro" --build-arg PIP_CERT=/run/host-ca.pem)
        else echo "note: PIP_CERT is set but docker build cannot mount it; the build uses the image's own certificates"; fi
    fi
    echo "building $IMAGE (TORCH=$TORCH, FROM $BASE) ..."
    local t; t=$(now)
    "$ENGINE" "${build[@]}" "$WORK/context" > "$WORK/build.log" 2>&1 || { tail -20 "$WORK/build.log"; die "the build failed (log: $WORK/build.log)"; }
    echo "built in $(since "$t") s"
}
[ -n "$GIVEN_IMAGE" ] || build_image
image_exists "$IMAGE" || die "no image $IMAGE"
SIZE=$("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE")
BASE_SIZE=$("$ENGINE" image inspect --format '{{.Size}}' "$BASE" 2>/dev/null || echo 0)
RUN=(--read-only --network none)
[ "$ENGINE" = podman ] && RUN+=(--read-only-tmpfs=false)  # as docker's --read-only: no writable /tmp, /run
if [ "$GPU" -eq 1 ]; then
    if [ "$ENGINE" = podman ]; then RUN+=(--device nvidia.com/gpu=all); else RUN+=(--gpus all); fi
fi
PARTS=$("$ENGINE" run --rm "${RUN[@]}" "$IMAGE" sh -c 'for d in /opt/venv /opt/venv/lib/python3*/site-packages/torch /workspace/models; do du -sm "$d"; done' | awk '{ printf "%s %s MB, ", $2, $1 }')
echo "image size: $((SIZE / 1000000)) MB (base $((BASE_SIZE / 1000000)) MB; ${PARTS%, })"

# 3. the version inside names the host's commit
T=$(now)
INSIDE=$("$ENGINE" run --rm "${RUN[@]}" "$IMAGE" mood-dpa --version)
STARTUP=$(since "$T")
HOSTV=$("$BIN" --version)
if [ "$INSIDE" = "$HOSTV" ]; then report "ok version: $INSIDE"; else report "FAIL version: image says '$INSIDE', host '$HOSTV'"; fi
T=$(now); "$ENGINE" run --name "mood-dpa-check-$$-empty" "${RUN[@]}" "$IMAGE" true; BARE=$(since "$T")
# what the engine itself changes in any container (mount points such as /etc/hosts): not the scripts' doing
ENGINE_DIFF=$("$ENGINE" diff "mood-dpa-check-$$-empty"); "$ENGINE" rm "mood-dpa-check-$$-empty" >/dev/null
echo "start-up: $BARE s for an empty container, $STARTUP s to 'mood-dpa --version'"

# 4. the organisers' protocol, each script on the toy cases; then the host's predictions for the same cases
snapshot() { (cd "$1" && find . -exec stat -c '%n %s %Y %a' {} + | sort); }
run_script() {  # run_script NAME IN OUT [extra engine options]: runs the script in a named container
    local name=$1 in=$2 out=$3
    shift 3
    RUNNING=mood-dpa-check-$$-$name
    "$ENGINE" run --name "$RUNNING" "${RUN[@]}" "$@" -v "$in:/mnt/data:ro" -v "$out:/mnt/pred" "$IMAGE" \
        sh "/workspace/run_$name.sh" /mnt/data /mnt/pred
}
printf '%-14s %6s %9s %10s %10s %11s %13s\n' script cases "1 case s" "all s" "s/volume" "start-up s" "host predict s" > "$WORK/timing.txt"
for name in pixel_brain sample_brain pixel_abdom sample_abdom; do
    task=${name%_*}; dataset=${name#*_}
    demo=$DEMO; [ "$dataset" = abdom ] && demo=$DEMO_ABDOM
    in=$WORK/in/$dataset; one=$WORK/in/${dataset}_one
    if [ ! -d "$in" ]; then
        mkdir -p "$in" "$one"
        cp "$demo/valset/toy/"*.nii.gz "$in/"
        cp "$(ls "$in"/*.nii.gz | head -n 1)" "$one/"
    fi
    n=$(ls "$in" | wc -l)
    before=$(snapshot "$in")
    out=$WORK/out/$name; mkdir -p "$out" "$WORK/out/${name}_one"
    T=$(now); run_script "$name" "$one" "$WORK/out/${name}_one" >/dev/null 2>"$WORK/$name.one.err" || report "FAIL $name on one case: $(tail -1 "$WORK/$name.one.err")"
    T1=$(since "$T"); "$ENGINE" rm "$RUNNING" >/dev/null
    T=$(now)
    if run_script "$name" "$in" "$out" > "$WORK/$name.out" 2> "$WORK/$name.err"; then :; else report "FAIL $name exited non-zero: $(tail -1 "$WORK/$name.err")"; fi
    TN=$(since "$T")
    changed=$("$ENGINE" diff "$RUNNING" | grep -v -x -F -e "$ENGINE_DIFF" | grep -v -E '^[AC] /mnt(/(data|pred))?$' || true)
    "$ENGINE" rm "$RUNNING" >/dev/null; RUNNING=""
    if [ -z "$changed" ]; then report "ok $name: nothing written outside /mnt/pred"; else report "FAIL $name wrote outside /mnt/pred: $(echo "$changed" | head -3 | tr '\n' ' ')"; fi
    [ "$before" = "$(snapshot "$in")" ] || report "FAIL $name: the input folder changed"
    host=$WORK/host/$name
    T=$(now); "$BIN" predict --model "$demo/fit/detector.yaml" --task "$task" -i "$in" -o "$host" --no-record > /dev/null; TH=$(since "$T")
    report "$("$PY" "$HERE/check_outputs.py" --task "$task" --input "$in" --output "$out" --host "$host") [$name]"
    "$BIN" evaluate --pred "$out" --labels "$demo/valset" --task "$task" > "$WORK/$name.eval" 2>&1 || true
    echo "  MOOD evaluation of the container's $name outputs: $(grep -m1 -E "^$task AP" "$WORK/$name.eval" || tail -1 "$WORK/$name.eval")"
    awk -v s="$name" -v n="$n" -v a="$T1" -v b="$TN" -v h="$TH" 'BEGIN { v = (b - a) / (n - 1); printf "%-14s %6d %9.1f %10.1f %10.2f %11.1f %13.1f\n", s, n, a, b, v, a - v, h }' >> "$WORK/timing.txt"
done
echo "timing (wall clock; start-up = one case minus one volume's share: container, interpreter, loading the detector; host predict: the same cases outside the container):"
cat "$WORK/timing.txt"

# 5. stopped mid-run: SIGTERM (then SIGKILL after 10 s) must leave OUT empty; after a kill, the next run cleans up
stop_test() {  # stop_test stop|kill
    local out=$WORK/out/$1_mid
    mkdir -p "$out"
    RUNNING=mood-dpa-check-$$-$1
    "$ENGINE" run -d --name "$RUNNING" "${RUN[@]}" -v "$WORK/in/brain:/mnt/data:ro" -v "$out:/mnt/pred" "$IMAGE" \
        sh /workspace/run_pixel_brain.sh /mnt/data /mnt/pred > /dev/null
    local deadline=$(( $(date +%s) + 120 ))
    until ls -d "$out"/.mood-dpa-work.*/pred >/dev/null 2>&1 || [ "$(date +%s)" -gt "$deadline" ]; do sleep 0.2; done
    sleep 3  # scoring has started
    local T; T=$(now)
    if [ "$1" = stop ]; then "$ENGINE" stop -t 10 "$RUNNING" > /dev/null; else "$ENGINE" kill "$RUNNING" > /dev/null; "$ENGINE" wait "$RUNNING" > /dev/null || true; fi
    local took; took=$(since "$T")
    local rc; rc=$("$ENGINE" inspect --format '{{.State.ExitCode}}' "$RUNNING")
    "$ENGINE" rm "$RUNNING" > /dev/null; RUNNING=""
    local left; left=$(ls -A "$out" | tr '\n' ' ')
    if [ "$1" = stop ]; then
        if [ "$rc" = 130 ] && [ -z "$left" ]; then report "ok stop mid-run: exit 130 after $took s, OUT empty"
        else report "FAIL stop mid-run: exit $rc after $took s, OUT holds: ${left:-nothing}"; fi
    else
        run_script pixel_brain "$WORK/in/brain_one" "$out" > /dev/null 2>&1 || true
        "$ENGINE" rm "$RUNNING" > /dev/null; RUNNING=""
        local after; after=$(ls -A "$out" | tr '\n' ' ')
        if [ "$after" = "$(ls "$WORK/in/brain_one") " ]; then report "ok kill mid-run (left: ${left:-nothing}), then a run: OUT holds only its prediction"
        else report "FAIL after a kill and a new run OUT holds: $after"; fi
    fi
}
stop_test stop
stop_test kill
echo "image $IMAGE: $((SIZE / 1000000)) MB"
if [ "$FAILED" -eq 0 ]; then echo "all checks passed"; else echo "some checks FAILED"; exit 1; fi
