#!/bin/sh
# Re-create the py-spy and pyinstrument sample files in this directory from real runs of workload.py.
# Usage: sh tests/data/formats/regenerate.sh [scratch dir]   (needs py-spy and pyinstrument; ~10 s)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-$(mktemp -d)}
mkdir -p "$work"
cp "$here/workload.py" "$here/spawn_workload.py" "$work/"
cd "$work"
py-spy record --rate 100 --format speedscope -o "$here/pyspy.speedscope.json" -- python workload.py
py-spy record --rate 100 --idle --threads --format speedscope -o "$here/pyspy_idle_threads.speedscope.json" -- python workload.py
py-spy record --rate 100 --format raw -o "$here/pyspy_raw.txt" -- python workload.py
py-spy record --rate 100 --idle --threads --format raw -o "$here/pyspy_raw_idle_threads.txt" -- python workload.py
py-spy record --rate 100 --subprocesses --threads --format raw -o "$here/pyspy_raw_subprocesses.txt" -- python spawn_workload.py
pyinstrument --interval 0.01 -r session -o "$here/pyinstrument.pyisession" workload.py
pyinstrument --interval 0.01 -r json -o "$here/pyinstrument_renderer.json" workload.py
pyinstrument --interval 0.01 -r speedscope -o "$here/pyinstrument.speedscope.json" workload.py
