#!/usr/bin/env bash
# Do w2vprof's dependencies install as wheels on Python 3.8, linux-aarch64 (JetPack 5 on a Jetson Xavier, Ubuntu
# 20.04 on a Raspberry Pi)? No Python 3.8 can be installed on the CI machines, so pip resolves for that target
# without installing anything (--dry-run --python-version 3.8 --platform ..._aarch64 --only-binary=:all:) and
# writes what it chose (--report); then every choice is checked: a wheel for cp38 (or abi3/any) on aarch64 (or
# any platform) whose Requires-Python admits 3.8. Needs PyPI (about 40 MB of metadata; under a minute).
#
# The dependencies are pyproject.toml's, torch and torchaudio included (PyPI's aarch64 wheels, what a Pi installs;
# a Jetson keeps NVIDIA's torch, docs/install.md). The index is PyPI itself (--isolated): a local mirror or
# --find-links folder that does not publish Requires-Python lets pip pick releases that dropped Python 3.8.
#
# Usage: .ci/resolve-python38-aarch64.sh            (OUT=folder keeps report.json there)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"

mapfile -t requirements < <("$PYTHON" - "$REPO/pyproject.toml" <<'EOF'
import sys
try:
    import tomllib
except ImportError:  # Python 3.10 and older
    import tomli as tomllib
with open(sys.argv[1], "rb") as file:
    print("\n".join(tomllib.load(file)["project"]["dependencies"]))
EOF
)
echo "resolving for Python 3.8 linux-aarch64: ${requirements[*]}"

cert=()
if [ -n "${PIP_CERT:-}" ]; then cert=(--cert "$PIP_CERT"); fi
"$PYTHON" -m pip --isolated "${cert[@]}" install --dry-run --ignore-installed --quiet \
    --report "$OUT/report.json" --target "$OUT/target" --index-url https://pypi.org/simple \
    --only-binary=:all: --python-version 3.8 --implementation cp --abi cp38 \
    --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux_2_28_aarch64 \
    --platform manylinux_2_31_aarch64 --platform linux_aarch64 \
    "${requirements[@]}"

"$PYTHON" - "$OUT/report.json" <<'EOF'
import json
import sys

from packaging.specifiers import SpecifierSet
from packaging.utils import parse_wheel_filename

report = json.load(open(sys.argv[1]))
problems = []
for item in sorted(report["install"], key=lambda item: item["metadata"]["name"].lower()):
    metadata, url = item["metadata"], item["download_info"]["url"]
    wheel = url.rsplit("/", 1)[-1]
    requires = metadata.get("requires_python") or ""
    tags = parse_wheel_filename(wheel)[3]
    python_ok = not requires or SpecifierSet(requires).contains("3.8.10")
    tag_ok = any(t.abi in ("cp38", "abi3", "none") and (t.platform == "any" or "aarch64" in t.platform)
                 for t in tags)
    print(f"{metadata['name']:20} {metadata['version']:12} Requires-Python {requires or '(any)':24} {wheel}")
    if not (python_ok and tag_ok):
        problems.append(f"{wheel}: Requires-Python {requires!r}, tags {sorted(map(str, tags))}")
if problems:
    sys.exit("not installable on Python 3.8 linux-aarch64:\n" + "\n".join(problems))
print(f"{len(report['install'])} wheels, each for Python 3.8 on linux-aarch64")
EOF
