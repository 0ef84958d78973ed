#!/bin/sh
# MOOD entry point: pixel-level anomaly scores for brain MRI.
#   usage: sh run_pixel_brain.sh IN OUT    (see mood_run.sh)
HERE=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
exec sh "$HERE/mood_run.sh" pixel brain "$@"
