"""Record types: one flat, typed row per CSV line, with units in the field names.

Everything w2vprof writes (profile, sweep, the shipped paper reference) uses `ResultRecord`, so any two
results files can be concatenated and compared. FLOPs are FLOPs (2 per multiply-add), never MACs.
Machine files use SI base units: bytes, seconds, joules, watts.

Schema history:
  1 - first release.
Loading a file of an older version fills fields it lacks with their defaults; loading a file that is not
w2vprof output raises BadInput naming the file.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Optional

from w2vprof.errors import BadInput
from w2vprof.files import write_text_atomic

__all__ = [
    "SCHEMA_VERSION",
    "STATUSES",
    "ResultRecord",
    "LayerRecord",
    "ModuleSummaryRow",
    "RESULT_COLUMNS",
    "LAYER_COLUMNS",
    "record_to_row",
    "rows_to_csv_text",
    "write_records_csv",
    "write_text_atomic",
    "length_key",
    "read_results_csv",
    "read_layers_csv",
]

SCHEMA_VERSION = 1

#: ok - measured; oom - out of memory (real, or over --mem-limit, or pruned: see skipped_because);
#: timeout - over --timeout; unsupported - the device cannot run this precision; error - anything else.
STATUSES = ("ok", "oom", "timeout", "unsupported", "error")


@dataclass
class ResultRecord:
    """One training configuration on one device: the row of results.csv.

    Every measured field is None (an empty CSV cell) when the configuration did not run to the end.
    """

    # --- identity of the configuration -------------------------------------------------------------
    model: str = ""
    batch: int = 0
    seconds: float = 0.0  # utterance length in seconds (mean length for a length distribution / audio)
    precision: str = "fp32"  # fp32 | mixed
    device: str = ""  # torch device kind: cpu | cuda | mps
    workload: str = "synthetic"  # synthetic | synthetic:normal(mean,std) | audio:<name>
    status: str = "ok"
    error: str = ""  # last line of the error for status error/oom/timeout
    skipped_because: str = ""  # for pruned rows: the configuration whose OOM implied this one
    source: str = "measured"  # measured | paper | estimated:<method>

    # --- time: every timed step individually, device synchronised ----------------------------------
    sec_per_batch_median: Optional[float] = None
    sec_per_batch_mean: Optional[float] = None
    sec_per_batch_std: Optional[float] = None
    sec_per_batch_min: Optional[float] = None
    sec_per_batch_max: Optional[float] = None
    sec_per_batch_iqr: Optional[float] = None
    sec_per_sequence: Optional[float] = None  # median seconds per batch / batch
    repeats: int = 0
    warmup: int = 0

    # --- compute (torch.utils.flop_counter, 2 FLOPs per multiply-add) --------------------------------
    fwd_flops: Optional[int] = None
    bwd_flops: Optional[int] = None
    optim_flops: Optional[int] = None
    train_flops: Optional[int] = None
    flops_source: str = ""
    achieved_flops_per_sec: Optional[float] = None

    # --- memory ------------------------------------------------------------------------------------
    act_mem_bytes: Optional[int] = None  # tensors saved for backward, de-duplicated by storage
    param_bytes: Optional[int] = None
    grad_bytes: Optional[int] = None
    optim_state_bytes: Optional[int] = None
    peak_mem_bytes: Optional[int] = None
    peak_mem_source: str = ""  # cuda_max_allocated | rss_hwm | rss_hwm_since_start | mps_sampled
    peak_mem_reserved_bytes: Optional[int] = None  # CUDA caching allocator reserve (empty elsewhere)
    mem_limit_bytes: Optional[int] = None  # sweep --mem-limit in force, if any
    memory_ceiling_bytes: Optional[int] = None  # memory a configuration can use on this device
    memory_ceiling_source: str = ""  # cuda_total | os_available (unified memory, e.g. Jetson) | os_total

    # --- what the objective computed (sanity) ------------------------------------------------------
    loss: Optional[float] = None
    masked_fraction: Optional[float] = None

    # --- workload length distribution (seconds of real audio per utterance) ------------------------
    utt_sec_mean: Optional[float] = None
    utt_sec_median: Optional[float] = None
    utt_sec_p90: Optional[float] = None
    utt_sec_max: Optional[float] = None
    padding_fraction: Optional[float] = None  # padded samples / all samples in the timed batches

    # --- telemetry during the timed steps (empty with an empty source when unavailable) ------------
    energy_j_per_batch: Optional[float] = None
    avg_power_w: Optional[float] = None
    energy_source: str = ""  # rapl | nvml | ina3221 | tegrastats | pmic
    max_temp_c: Optional[float] = None
    temp_source: str = ""
    clock_mhz_before: Optional[float] = None
    clock_mhz_after: Optional[float] = None
    clock_source: str = ""
    throttled: Optional[bool] = None
    throttle_reason: str = ""

    # --- environment ---------------------------------------------------------------------------------
    device_name: str = ""
    device_fingerprint: str = ""
    cpu_model: str = ""
    cpu_cores: Optional[int] = None
    threads: Optional[int] = None
    total_mem_bytes: Optional[int] = None
    gpu_name: str = ""
    bf16_native: Optional[bool] = None
    torch_version: str = ""
    torchaudio_version: str = ""
    w2vprof_version: str = ""
    python_version: str = ""
    hostname: str = ""
    timestamp: str = ""  # ISO 8601, UTC
    seed: Optional[int] = None
    notes: str = ""
    layers_file: str = ""  # per-layer breakdown of this configuration, relative to the results file
    schema_version: int = SCHEMA_VERSION


@dataclass
class LayerRecord:
    """One layer of the per-layer breakdown (layers.csv), in forward order."""

    layer: str
    kind: str  # cnn | projection | positional | transformer | quantizer | head | loss
    params: int = 0
    fwd_flops: int = 0
    bwd_flops: int = 0
    act_mem_bytes: int = 0
    cum_act_mem_bytes: int = 0


@dataclass
class ModuleSummaryRow:
    """One row of `w2vprof summary` (Table 1 of the paper): inference cost of a module group."""

    model: str
    module: str  # cnn_encoder | transformer | quantizer | heads | total (or a layer name with --layers)
    params: int
    inference_flops: int
    seconds: float
    batch: int


def length_key(seconds: float) -> float:
    """The one definition of "the same utterance length": equal to the millisecond.

    Audio workloads record their mean length rounded to 3 decimals, and tables select configurations by a
    typed length (5.5), so every comparison of two lengths goes through this key.
    """
    return round(float(seconds), 3)


RESULT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ResultRecord))
LAYER_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(LayerRecord))

def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def record_to_row(record: Any) -> list[str]:
    return [_cell(getattr(record, f.name)) for f in fields(record)]


def rows_to_csv_text(records: Iterable[Any], columns: Iterable[str], header: bool = True) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(list(columns))
    for record in records:
        writer.writerow(record_to_row(record))
    return buffer.getvalue()


def write_records_csv(path: Path, records: Iterable[Any], columns: Iterable[str]) -> None:
    write_text_atomic(path, rows_to_csv_text(records, columns))


def _parse(value: str, annotation: Any) -> Any:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    if value == "":
        return None if "Optional" in text else _default_empty(text)
    if "bool" in text:
        return value.strip().lower() in ("true", "1", "yes")
    if "int" in text:
        return int(float(value))
    if "float" in text:
        return float(value)
    return value


def _default_empty(type_text: str) -> Any:
    if "int" in type_text:
        return 0
    if "float" in type_text:
        return 0.0
    return ""


def _read_rows(path: Path, cls: type, required: tuple[str, ...], text: Optional[str] = None) -> list:
    """Rows of `path` (or of `text`, named `path` in messages) as `cls`; BadInput for anything else."""
    path = Path(path)
    try:
        with (io.StringIO(text, newline="") if text is not None else open(path, newline="", encoding="utf-8")) as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in required if c not in header]
            if missing:
                raise BadInput(
                    f"{path}: not a w2vprof {cls.__name__} file (missing columns: {', '.join(missing)})"
                )
            known = {f.name: f for f in fields(cls)}
            rows = []
            for line_no, raw in enumerate(reader, start=2):
                if None in raw:  # more cells than header: a torn or foreign line
                    raise BadInput(f"{path}: line {line_no} has more cells than the header")
                values = {}
                for name, value in raw.items():
                    if name in known and value is not None:
                        try:
                            values[name] = _parse(value, known[name].type)
                        except ValueError:
                            raise BadInput(
                                f"{path}: line {line_no}: column {name} has {value!r}, not a number"
                            ) from None
                rows.append(cls(**values))
            return rows
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: is a folder, not a CSV file") from None
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not a text CSV file") from None
    except csv.Error as exc:
        raise BadInput(f"{path}: not a readable CSV file ({exc})") from None


def read_results_csv(path: Path, text: Optional[str] = None) -> list[ResultRecord]:
    """Read a results file of any schema version (or its `text`); BadInput for anything that is not one."""
    rows = _read_rows(path, ResultRecord, ("model", "batch", "seconds", "precision", "status"), text)
    for row in rows:
        if row.schema_version > SCHEMA_VERSION:
            raise BadInput(
                f"{path}: written by a newer w2vprof (schema {row.schema_version} > {SCHEMA_VERSION}); upgrade w2vprof"
            )
    return rows


def read_layers_csv(path: Path) -> list[LayerRecord]:
    return _read_rows(path, LayerRecord, ("layer", "kind", "act_mem_bytes"))


def replace(record: Any, **changes: Any) -> Any:
    return dataclasses.replace(record, **changes)
