#!/usr/bin/env bash
# Test w2vprof with the oldest torch/torchaudio pair pyproject.toml declares, in a fresh virtual environment.
#
# Not part of the default CI (.ci/run): it downloads about 3 GB, because PyPI's x86_64 torch wheels pull the CUDA
# libraries, and installing takes 4-10 minutes. The other dependencies resolve to their newest releases.
#
# Usage:  .ci/test-dependency-floor.sh
#         TORCH=2.4.1 TORCHAUDIO=2.4.1 VENV=/tmp/floor-venv PYTHON=python3.11 .ci/test-dependency-floor.sh
set -euo pipefail

TORCH="${TORCH:-2.4.1}"
TORCHAUDIO="${TORCHAUDIO:-2.4.1}"
VENV="${VENV:-/tmp/w2vprof-floor-venv}"
PYTHON="${PYTHON:-python3}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

"$PYTHON" -m venv --clear "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install "torch==$TORCH" "torchaudio==$TORCHAUDIO"
# Pin what was just installed, so resolving w2vprof's dependencies cannot replace it (the same recipe as a Jetson's).
"$VENV/bin/python" -m pip freeze | grep -iE '^(torch|torchaudio)==' > "$VENV/constraints.txt"
"$VENV/bin/python" -m pip install -c "$VENV/constraints.txt" -e "$REPO[test]"
"$VENV/bin/python" -m pip check
"$VENV/bin/python" -m pip freeze | grep -iE '^(torch|torchaudio|numpy|typer|pandas)=='

cd "$REPO"
"$VENV/bin/w2vprof" doctor
"$VENV/bin/w2vprof" summary --model base
# The unit tests that need no Flower (the fl extra keeps its own floor: flwr>=1.42). Deselected: the golden tiny
# profile, whose masked frames (and so the FLOPs of the heads after the mask) come from seeded draws, and torch's CPU
# dropout and exponential sampling draw different streams from the same seed in 2.4 and in the torch the goldens
# were captured with. The summary goldens (no randomness) do run.
"$VENV/bin/python" -m pytest -q -p no:cacheprovider \
    tests/test_compat.py tests/test_doctor.py tests/test_summary.py tests/test_objective.py \
    tests/test_golden_numbers.py tests/test_analysis.py tests/test_workload_lengths.py tests/test_profile.py \
    --deselect tests/test_golden_numbers.py::test_tiny_profile_numbers_and_columns_are_unchanged \
    --deselect tests/test_golden_numbers.py::test_tiny_profile_layer_rows_are_unchanged
