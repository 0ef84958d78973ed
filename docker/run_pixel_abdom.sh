#!/bin/sh
# MOOD entry point: pixel-level anomaly scores for abdominal CT.
#   usage: sh run_pixel_abdom.sh IN OUT    (see mood_run.sh)
HERE=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
exec sh "$HERE/mood_run.sh" pixel abdom "$@"
