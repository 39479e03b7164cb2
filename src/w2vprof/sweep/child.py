"""The child process of a sweep: measure one configuration, write the result as JSON, exit.

    python -m w2vprof.sweep.child CONFIG_JSON RESULT_PATH

Running each configuration in a fresh process isolates it: an OOM kill, a crash in a native library or a
leak costs that configuration only, and every configuration starts from the same memory state.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict


def main(argv: list[str]) -> int:
    from w2vprof.errors import BadInput
    from w2vprof.measure.engine import ProfileConfig, profile_configuration

    config = ProfileConfig.from_json(argv[0])
    result_path = argv[1]
    try:
        result = profile_configuration(config)
    except BadInput as exc:
        print(f"BadInput: {exc}", file=sys.stderr)
        return 2
    payload = {
        "record": asdict(result.record),
        "layers": [asdict(layer) for layer in result.layers],
        "step_times_s": result.step_times,
        "warnings": result.warnings,
    }
    tmp = result_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
