#!/bin/sh
# Make a local base image for the submission from Debian's archive alone, for machines that cannot
# pull from a container registry (only Debian's and PyPI's servers reachable).
#   usage: sh docker/build_offline_base.sh [IMAGE]      (default IMAGE: localhost/mood-dpa-base:bookworm)
#   then:  mood-dpa submission --base-image IMAGE ...   and build that context with the same engine
# The image: Debian bookworm, minbase variant, python3 and python3-venv (the Dockerfile makes its own
# virtual environment), without documentation, man pages or translations. Needs mmdebstrap and podman
# or docker (apt-get install mmdebstrap podman runc uidmap). Environment: SUITE (default bookworm),
# MIRROR (default: mmdebstrap's, deb.debian.org), MOOD_ENGINE (podman or docker; default: podman when
# present). Takes 1-3 minutes; the image is about 180 MB (python3 3.11 with venv).
set -eu
case "${1:-}" in
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) echo "error: unknown option $1 (usage: sh docker/build_offline_base.sh [IMAGE])" >&2; exit 2 ;;
esac
if [ "$#" -gt 1 ]; then
    echo "error: one image name at most (usage: sh docker/build_offline_base.sh [IMAGE])" >&2
    exit 2
fi
IMAGE=${1:-localhost/mood-dpa-base:bookworm}
SUITE=${SUITE:-bookworm}
HERE=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
if ! command -v mmdebstrap >/dev/null 2>&1; then
    echo "error: mmdebstrap is not installed (apt-get install mmdebstrap)" >&2
    exit 2
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mood-dpa-base.XXXXXX")
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
trap 'echo "interrupted: removed $WORK" >&2; exit 130' INT TERM
. "$HERE/engine.sh"
pick_engine "$WORK/engine" || exit 2

echo "building a $SUITE root file system (minbase + python3, python3-venv) with mmdebstrap ..."
# shellcheck disable=SC2086  # MIRROR is empty (mmdebstrap's default) or one URL
mmdebstrap --variant=minbase --include=python3,python3-venv \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    "$SUITE" "$WORK/rootfs.tar" ${MIRROR:-}
"$ENGINE" import --change 'CMD ["/bin/sh"]' "$WORK/rootfs.tar" "$IMAGE" >/dev/null
"$ENGINE" run --rm --network none "$IMAGE" python3 -c "import sys, venv; print('python', sys.version.split()[0])"
SIZE=$("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE")
echo "made $IMAGE with $ENGINE ($((SIZE / 1000000)) MB); next: mood-dpa submission --base-image $IMAGE ..."
