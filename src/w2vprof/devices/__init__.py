"""Device detection and identity. (Minimal first version; telemetry readers live beside it.)"""
from __future__ import annotations

import hashlib
import os
import platform
import socket
from typing import Any

__all__ = ["identify"]


def _cpu_model(root: str = "/") -> str:
    try:
        with open(os.path.join(root, "proc/cpuinfo"), encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def identify(torch_device: str) -> dict[str, Any]:
    """Identity fields of a ResultRecord for this machine and torch device kind (cpu | cuda | mps)."""
    import psutil

    cpu_model = _cpu_model()
    total = int(psutil.virtual_memory().total)
    gpu_name = ""
    ceiling, ceiling_source = total, "os_total"
    if torch_device == "cuda":
        import torch

        props = torch.cuda.get_device_properties(0)
        gpu_name = props.name
        ceiling, ceiling_source = int(props.total_memory), "cuda_total"
    name = gpu_name or cpu_model
    fingerprint_text = "|".join([socket.gethostname(), cpu_model, str(os.cpu_count()), str(total), gpu_name, torch_device])
    return {
        "device_name": name,
        "device_fingerprint": hashlib.sha1(fingerprint_text.encode()).hexdigest()[:12],
        "cpu_model": cpu_model,
        "cpu_cores": os.cpu_count(),
        "total_mem_bytes": total,
        "gpu_name": gpu_name,
        "memory_ceiling_bytes": ceiling,
        "memory_ceiling_source": ceiling_source,
        "hostname": socket.gethostname(),
    }
