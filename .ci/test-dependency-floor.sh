#!/usr/bin/env bash
# Test w2vprof with the oldest torch/torchaudio pair pyproject.toml declares, in a fresh virtual environment.
#
# Not part of the default CI (.ci/run): it downloads about 3 GB, because PyPI's x86_64 torch wheels pull the CUDA
# libraries, and installing takes 4-10 minutes. The other dependencies resolve to their newest releases, except
# NumPy below 2 with a torch before 2.3 (built against NumPy 1; JetPack 5's Python 3.8 has no NumPy 2 anyway).
#
# Usage:  .ci/test-dependency-floor.sh
#         TORCH=2.1.2 TORCHAUDIO=2.1.2 VENV=/tmp/floor-venv PYTHON=python3.11 .ci/test-dependency-floor.sh
set -euo pipefail

TORCH="${TORCH:-2.0.1}"
TORCHAUDIO="${TORCHAUDIO:-2.0.2}"
VENV="${VENV:-/tmp/w2vprof-floor-venv}"
PYTHON="${PYTHON:-python3}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

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
"$VENV/bin/python" -m pip install -c "$VENV/constraints.txt" -e "$REPO[test]"
"$VENV/bin/python" -m pip check
"$VENV/bin/python" -m pip freeze | grep -iE '^(torch|torchaudio|numpy|typer|pandas)=='

cd "$REPO"
"$VENV/bin/w2vprof" doctor
"$VENV/bin/w2vprof" summary --model base
"$VENV/bin/w2vprof" profile --model tiny --batch 2 --seconds 1 --repeats 2 --device cpu --out "$VENV/profile-tiny"

# The unit tests that need no Flower (the fl extra keeps its own floor: flwr>=1.42, Python 3.11).
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
"$VENV/bin/python" -m pytest -q -p no:cacheprovider \
    tests/test_compat.py tests/test_doctor.py tests/test_summary.py tests/test_objective.py tests/test_flops.py \
    tests/test_old_torch.py tests/test_measurement_pass.py tests/test_golden_numbers.py tests/test_analysis.py \
    tests/test_workload_lengths.py tests/test_profile.py \
    "${deselect[@]}"
