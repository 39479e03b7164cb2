#!/usr/bin/env bash
# Test w2vprof with the oldest releases pyproject.toml declares, in a fresh virtual environment:
# - the torch/torchaudio pair TORCH/TORCHAUDIO (default: the floor, torch 2.0.1 with torchaudio 2.0.2);
# - with DEPS=lowest (the default), every other runtime dependency (numpy, pandas, matplotlib, typer, rich, psutil,
#   nvidia-ml-py, soundfile) at the lowest release its floor admits that has a wheel for this Python and platform:
#   uv's `--resolution lowest-direct --only-binary :all:` (uv is installed from PyPI into the venv; pip has no lowest
#   resolution). On Python 3.11 that is above a floor whose first releases had no wheel for it (numpy 1.23.2 for
#   numpy>=1.23, psutil 5.9.4 for psutil>=5.9); the floors themselves are Python 3.8's (docs/install.md). Their own
#   dependencies resolve to the newest releases that fit, as they would for a user;
# - with DEPS=newest, every other dependency at its newest release (a fresh install next to that torch).
# NumPy stays below 2 with a torch before 2.3 (built against NumPy 1; JetPack 5's Python 3.8 has no NumPy 2 anyway).
# The test tools (the `test` extra) take their newest releases: their floors are the developers', not the users'.
#
# Not part of the default CI (.ci/run): it downloads about 3 GB, because PyPI's x86_64 torch wheels pull the CUDA
# libraries, and installing takes 5-15 minutes.
#
# Usage:  .ci/test-dependency-floor.sh
#         TORCH=2.1.2 TORCHAUDIO=2.1.2 DEPS=newest VENV=/tmp/floor-venv PYTHON=python3.11 .ci/test-dependency-floor.sh
set -euo pipefail

TORCH="${TORCH:-2.0.1}"
TORCHAUDIO="${TORCHAUDIO:-2.0.2}"
DEPS="${DEPS:-lowest}"
VENV="${VENV:-/tmp/w2vprof-floor-venv}"
PYTHON="${PYTHON:-python3}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "$DEPS" in
  lowest | newest) ;;
  *) echo "DEPS must be lowest or newest, got '$DEPS'" >&2; exit 2 ;;
esac

"$PYTHON" -m venv --clear "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install "torch==$TORCH" "torchaudio==$TORCHAUDIO"
# Pin what was just installed, so resolving w2vprof's dependencies cannot replace it (the same recipe as a Jetson's).
"$VENV/bin/python" -m pip freeze | grep -iE '^(torch|torchaudio)==' > "$VENV/constraints.txt"
# torch's (major, minor) before a release: prints 1 when the installed torch is older, else 0.
older_than() { "$VENV/bin/python" -c "import sys, torch; v = tuple(map(int, torch.__version__.split('.')[:2])); print(int(v < tuple(map(int, sys.argv[1].split('.')))))" "$1"; }
if [ "$(older_than 2.3)" = 1 ]; then
  echo "numpy<2" >> "$VENV/constraints.txt"
fi
if [ "$DEPS" = lowest ]; then
  "$VENV/bin/python" -m pip install --quiet uv
  # pyproject's dependencies are static, so uv reads them without building w2vprof.
  "$VENV/bin/uv" pip compile "$REPO/pyproject.toml" --python "$VENV/bin/python" --resolution lowest-direct \
      --only-binary :all: -c "$VENV/constraints.txt" --no-header --no-annotate --quiet -o "$VENV/lowest.txt"
  cat "$VENV/lowest.txt" >> "$VENV/constraints.txt"
fi
"$VENV/bin/python" -m pip install -c "$VENV/constraints.txt" -e "$REPO[test]"
"$VENV/bin/python" -m pip check
echo "Installed (DEPS=$DEPS):"
"$VENV/bin/python" -m pip freeze |
    grep -iE '^(torch|torchaudio|numpy|pandas|matplotlib|typer|click|rich|psutil|nvidia-ml-py|soundfile)=='

cd "$REPO"
"$VENV/bin/w2vprof" doctor
"$VENV/bin/w2vprof" summary --model base
"$VENV/bin/w2vprof" profile --model tiny --batch 2 --seconds 1 --repeats 2 --device cpu --out "$VENV/profile-tiny"

# Deselected:
# - the golden tiny profile, whose masked frames (and so the FLOPs of the heads after the mask) come from seeded
#   draws, and torch's CPU sampling draws different streams from the same seed in older releases (torch 2.0-2.3
#   mask 40 of the 98 frames, the goldens' torch 56). tests/test_old_torch.py checks that profile layer by layer
#   instead: the layers before the mask exactly, the heads after it per masked frame. The summary goldens (no
#   randomness) do run;
# - before torch 2.4, the test that inspects torch's own FlopCounterMode table (w2vprof counts with its own there).
deselect=(
  --deselect tests/test_golden_numbers.py::test_tiny_profile_numbers_and_columns_are_unchanged
  --deselect tests/test_golden_numbers.py::test_tiny_profile_layer_rows_are_unchanged
)
if [ "$(older_than 2.4)" = 1 ]; then
  deselect+=(--deselect tests/test_flops.py::test_the_counter_uses_our_attention_formulas)
fi
# Every unit test (Flower's are skipped: the fl extra keeps its own floor, flwr>=1.42 on Python 3.11), then the
# integration tests of what measures with torch: the measurement pass, profiles, recipes, the doctor's step.
"$VENV/bin/python" -m pytest -q -p no:cacheprovider -m "not integration" "${deselect[@]}"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider -m integration \
    tests/test_compat.py tests/test_doctor.py tests/test_summary.py tests/test_objective.py tests/test_flops.py \
    tests/test_old_torch.py tests/test_measurement_pass.py tests/test_golden_numbers.py tests/test_analysis.py \
    tests/test_workload_lengths.py tests/test_profile.py tests/test_recipes.py tests/test_mixed_precision.py \
    "${deselect[@]}"
