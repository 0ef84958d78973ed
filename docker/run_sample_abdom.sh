#!/bin/sh
# MOOD entry point: sample-level anomaly scores for abdominal CT.
#   usage: sh run_sample_abdom.sh IN OUT    (see mood_run.sh)
HERE=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
exec sh "$HERE/mood_run.sh" sample abdom "$@"
