"""Record types: one flat, typed row per CSV line, with units in the field names.

Everything w2vprof writes (profile, sweep, the shipped paper reference) uses `ResultRecord`, so any two
results files can be concatenated and compared. FLOPs are FLOPs (2 per multiply-add), never MACs.
Machine files use SI base units: bytes, seconds, joules, watts.

Schema history:
  1 - first release.
  2 - training recipes (results: recipe, checkpointing, freeze, accumulate, optimizer, compile, trainable_params,
      recompute_flops, compile_sec; layers: recompute_flops, trainable, checkpointed; a version-1 row is a
      `default` recipe row), and skipped_steps (optimizer steps the gradient scaler skipped for overflow during
      the timed steps), sys_peak_mem_bytes and sys_peak_mem_source (system memory the training took at its peak:
      on unified-memory devices the GPU's allocations too), cuda_context_bytes (discrete GPUs: device memory of the
      process outside torch's allocator, from NVML); the machine's measured ceilings (results: peak_flops_fp32_measured,
      peak_flops_mixed_measured, mem_bw_measured, peak_flops_fp32_vendor, peak_flops_mixed_vendor) and seconds
      per layer (layers: fwd_sec, bwd_sec, fwd_flops_per_sec, bwd_flops_per_sec, time_share, io_bytes, sec, and an
      `other` row of kind `other` for the rest of the step). Appended after schema_version: the columns of
      version 1 keep their places.
  3 - objective (results: `pretrain` or `ctc`, w2vprof.models.family.OBJECTIVES; a row of an older version is a
      `pretrain` row), appended last so every earlier column keeps its place.
Loading a file of an older version fills fields it lacks with their defaults; loading a file that is not
w2vprof output raises BadInput naming the file. Every row is checked before use (`RowRules`: batch a positive
whole number, seconds > 0, times, bytes and FLOPs finite and >= 0, status and precision from the known sets); a
cell that breaks a rule is BadInput "<file>: line N: column C has 'X', <why>". One cell is written and read
by w2vprof.record_codec (each column's type from its annotation).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional, Type, TypeVar

from w2vprof.errors import BadInput
from w2vprof.files import DurableCsv, csv_text, read_csv_rows, write_text_atomic
from w2vprof.record_codec import Invalid, cell_text, column_types, parse_cell, parse_number

__all__ = [
    "SCHEMA_VERSION",
    "DEFAULT_RECIPE",
    "recipe_of",
    "DEFAULT_OBJECTIVE",
    "objective_of",
    "STATUSES",
    "PRECISIONS",
    "ResultRecord",
    "LayerRecord",
    "ModuleSummaryRow",
    "RESULT_COLUMNS",
    "LAYER_COLUMNS",
    "readable_record",
    "record_to_row",
    "rows_to_csv_text",
    "write_records_csv",
    "write_text_atomic",
    "RecordCsv",
    "RowRules",
    "RESULT_RULES",
    "LAYER_RULES",
    "SUMMARY_RULES",
    "read_records",
    "length_key",
    "read_results_csv",
    "read_layers_csv",
    "read_summary_csv",
]

SCHEMA_VERSION = 3
#: The `recipe` of a plain training step (measure.recipes): what every row of schema 1 measured.
DEFAULT_RECIPE = "default"
#: The `objective` of every row before schema 3 (w2vprof.models.family.PRETRAIN).
DEFAULT_OBJECTIVE = "pretrain"

#: ok - measured; oom - out of memory (real, or over --mem-limit, or pruned: see skipped_because);
#: timeout - over --timeout; unsupported - the device cannot run this precision; error - anything else.
STATUSES = ("ok", "oom", "timeout", "unsupported", "error")
#: fp32 - full precision; mixed - autocast (bf16 on CPU, fp16 on CUDA).
PRECISIONS = ("fp32", "mixed")


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
    # which allocator: cuda_max_allocated | mps_driver_sampled_after_each_step | rss_hwm[_since_process_start]
    peak_mem_source: str = ""
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

    # --- training recipe (schema 2; appended after schema_version so version-1 columns keep their places) ----
    recipe: str = DEFAULT_RECIPE  # canonical short form, e.g. ckpt=transformer,freeze=cnn,accum=2 (measure.recipes)
    checkpointing: str = "none"  # none | transformer | cnn | all
    freeze: str = "none"  # none | cnn | cnn+N
    accumulate: int = 1  # micro-batches per optimizer step; batch is the effective batch
    optimizer: str = "adamw"  # adamw | sgd | adafactor
    compile: bool = False  # torch.compile
    trainable_params: Optional[int] = None  # parameters that get gradients and optimizer state
    recompute_flops: Optional[int] = None  # forward work run again by activation checkpointing (in train_flops)
    compile_sec: Optional[float] = None  # compilation: compiling steps' wall time beyond as many timed steps

    # --- schema 2 (appended after schema_version so version 1's columns keep their places) ---------------
    skipped_steps: Optional[int] = None  # timed steps whose optimizer step the gradient scaler skipped (overflow)
    # System memory the training took at its peak during the timed steps (w2vprof.measure.memory.SystemPeakMemory):
    # the process's resident high-water mark; on unified memory (Jetson) also the GPU's allocations, as
    # max(VmHWM, resident set + CUDA allocator reserve at the start + drop in MemAvailable during the steps).
    sys_peak_mem_bytes: Optional[int] = None
    # vmhwm[_since_process_start] | ru_maxrss_since_process_start | rss+cuda_reserved+memavailable_drop (unified)
    sys_peak_mem_source: str = ""
    cuda_context_bytes: Optional[int] = None  # discrete GPU: NVML's per-process memory - torch's reserve (context)

    # --- the machine's ceilings (w2vprof.devices.calibrate; empty without a calibration) ------------
    peak_flops_fp32_measured: Optional[float] = None  # FLOP/s, best run of a 2048^2 fp32 torch.mm
    peak_flops_mixed_measured: Optional[float] = None  # the same in the mixed dtype (bf16 on a CPU, fp16 on GPUs)
    mem_bw_measured: Optional[float] = None  # bytes read + written per second by a large copy
    peak_flops_fp32_vendor: Optional[float] = None  # FLOP/s from the shipped device profiles, where known
    peak_flops_mixed_vendor: Optional[float] = None

    # --- schema 3 (appended last so every earlier column keeps its place) ------------------------------------
    objective: str = DEFAULT_OBJECTIVE  # pretrain (the model's self-supervised objective) | ctc (fine-tuning)


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
    recompute_flops: int = 0  # forward work activation checkpointing ran again during backward
    trainable: bool = True  # False: none of the layer's parameters gets a gradient (a frozen layer)
    checkpointed: bool = False  # its modules ran under activation checkpointing
    # seconds per layer (w2vprof.measure.layer_timing; empty when not measured, e.g. a sweep without
    # --layer-repeats): medians over the extra steps; the `other` row (kind other) holds the rest of the step
    fwd_sec: Optional[float] = None
    bwd_sec: Optional[float] = None
    fwd_flops_per_sec: Optional[float] = None  # fwd_flops / fwd_sec
    bwd_flops_per_sec: Optional[float] = None
    time_share: Optional[float] = None  # (fwd_sec + bwd_sec, or other's seconds) / the rows' sum
    io_bytes: Optional[int] = None  # tensors entering and leaving the layer's forward (weights not included)
    sec: Optional[float] = None  # fwd_sec + bwd_sec; on the `other` row its whole time (the rows add up to the step)


@dataclass
class ModuleSummaryRow:
    """One row of `w2vprof summary` (Table 1 of the paper): inference cost of a module group."""

    model: str
    module: str  # cnn_encoder | transformer | quantizer | heads | total (or a layer name with --layers)
    params: int
    inference_flops: int
    seconds: float
    batch: int


def recipe_of(record: Any) -> str:
    """A row's recipe: its `recipe` column, `default` where an older file left it empty."""
    return getattr(record, "recipe", "") or DEFAULT_RECIPE


def objective_of(record: Any) -> str:
    """A row's objective: its `objective` column, `pretrain` where an older file left it empty."""
    return getattr(record, "objective", "") or DEFAULT_OBJECTIVE


def length_key(seconds: float) -> float:
    """The one definition of "the same utterance length": equal to the millisecond.

    Audio workloads record their mean length rounded to 3 decimals, and tables select configurations by a
    typed length (5.5), so every comparison of two lengths goes through this key.
    """
    return round(float(seconds), 3)


RESULT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ResultRecord))
LAYER_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(LayerRecord))


def record_to_row(record: Any) -> list[str]:
    return [cell_text(getattr(record, f.name)) for f in fields(record)]


def rows_to_csv_text(records: Iterable[Any], columns: Iterable[str], header: bool = True) -> str:
    return csv_text((record_to_row(r) for r in records), tuple(columns) if header else None)


def write_records_csv(
    path: Path, records: Iterable[Any], columns: Iterable[str], rules: Optional[RowRules] = None
) -> None:
    """`records` as a whole CSV file, written atomically; with `rules`, each first made readable by them
    (readable_record)."""
    if rules is not None:
        records = [readable_record(record, rules) for record in records]
    write_text_atomic(path, rows_to_csv_text(records, columns))


def readable_record(record: Row, rules: RowRules) -> Row:
    """`record` as its file's reader (read_records with `rules`) will take it back.

    A reader refuses a whole file for one cell that breaks its rules, so a value w2vprof computed wrongly (a
    negative time, a NaN where none belongs) would make every finished row of a results file unreadable, and the
    sweep unresumable. Such a cell is left empty instead, where its field may be empty, and said in the record's
    `notes` where it has them; every other cell is written as it is.
    """
    values = {field.name: getattr(record, field.name) for field in fields(record)}
    changes: dict[str, Any] = {}
    said = []
    for name, column in column_types(type(record)).items():
        text = cell_text(values[name])
        reason = parse_cell(name, text, column, rules)
        if isinstance(reason, Invalid) and column.optional:
            changes[name] = None
            said.append(f"{name} was {text} ({reason}): left empty")
    if not changes:
        return record
    if "notes" in values:
        changes["notes"] = "; ".join(filter(None, [values["notes"], *said]))
    return dataclasses.replace(record, **changes)


class RecordCsv:
    """A `DurableCsv` of records (one dataclass per row): `append` / `extend` write durably, all rows in one write.
    With `rules`, each record is first made readable by them (readable_record)."""

    def __init__(self, path: Path, columns: tuple[str, ...], rules: Optional[RowRules] = None) -> None:
        self.csv = DurableCsv(path, columns)
        self.path = self.csv.path
        self.columns = self.csv.columns
        self.rules = rules

    def append(self, record: Any) -> None:
        self.extend([record])

    def extend(self, records: Iterable[Any]) -> None:
        """All `records` in one write + fsync: a kill leaves them whole or absent."""
        self.csv.append_rows(record_to_row(r) for r in self._readable(records))

    def replace_all(self, records: Iterable[Any]) -> None:
        """Rewrite the file atomically with `records` as its only rows."""
        self.csv.replace_rows(record_to_row(r) for r in self._readable(records))

    def _readable(self, records: Iterable[Any]) -> Iterable[Any]:
        rules = self.rules
        return records if rules is None else (readable_record(record, rules) for record in records)


@dataclass(frozen=True)
class RowRules:
    """What a row of one record type must hold before anything uses it.

    Every number is finite and >= 0 unless named here: `positive` ones are > 0 (batch, utterance seconds, seconds
    per batch: things a table divides by), `signed` ones may be negative (a temperature, a seed), `any_float` ones
    may also be NaN or infinite (a diverged loss is a measurement). `choices` lists the allowed texts of a column;
    other text columns hold anything (a model name w2vprof does not know is fine).
    """

    what: str  # names the kind of file in messages: "not a w2vprof <what> file"
    required: tuple[str, ...]
    positive: frozenset[str] = frozenset()
    signed: frozenset[str] = frozenset()
    any_float: frozenset[str] = frozenset()
    choices: tuple[tuple[str, tuple[str, ...]], ...] = ()
    schema_version: int = SCHEMA_VERSION


RESULT_RULES = RowRules(
    what="results",
    required=("model", "batch", "seconds", "precision", "status"),
    positive=frozenset(
        {
            "batch",
            "seconds",
            "sec_per_batch_median",
            "sec_per_batch_mean",
            "sec_per_batch_min",
            "sec_per_batch_max",
            "sec_per_sequence",
        }
    ),
    signed=frozenset({"max_temp_c", "seed"}),
    any_float=frozenset({"loss"}),
    choices=(("status", STATUSES), ("precision", PRECISIONS)),
)
LAYER_RULES = RowRules(what="per-layer", required=("layer", "kind", "act_mem_bytes"))
#: `w2vprof summary --format csv` (Table 1): counts >= 0, the batch and the utterance length > 0.
SUMMARY_RULES = RowRules(
    what="summary CSV",
    required=("model", "module", "params", "inference_flops", "seconds", "batch"),
    positive=frozenset({"batch", "seconds"}),
)


if TYPE_CHECKING:  # pragma: no cover
    from _typeshed import DataclassInstance

#: A row type: one of the dataclasses above.
Row = TypeVar("Row", bound="DataclassInstance")


def read_records(
    path: Path, cls: Type[Row], rules: RowRules, text: Optional[str] = None, require_rows: bool = True
) -> list[Row]:
    """Rows of the CSV file `path` (or of `text`, named `path` in messages) as `cls`, each checked against `rules`.

    Columns `cls` does not have are ignored and columns it has but the file lacks take their defaults (files of
    older schema versions); a cell that breaks the rules is BadInput "<file>: line N: column C has 'X', <why>".
    A file with a header and no rows is BadInput "no rows" when `require_rows`.
    """
    header, rows = read_csv_rows(path, text, rules.what)
    missing = [c for c in rules.required if c not in header]
    if missing:
        raise BadInput(f"{path}: not a w2vprof {rules.what} file (missing columns: {', '.join(missing)})")
    if require_rows and not rows:
        raise BadInput(f"{path}: no rows")
    types = column_types(cls)
    records = []
    for line_no, raw in rows:
        _check_schema(path, line_no, raw.get("schema_version", ""), rules.schema_version)
        values = {}
        for name, value in raw.items():
            if name in types:
                parsed = parse_cell(name, value, types[name], rules)
                if isinstance(parsed, Invalid):
                    raise BadInput(f"{path}: line {line_no}: column {name} has {value!r}, {parsed}")
                values[name] = parsed
        records.append(cls(**values))
    return records


def _check_schema(path: Path, line_no: int, value: str, newest: int) -> None:
    """A row of a newer schema may mean other things by the same columns: refuse it before reading it."""
    version = parse_number(value, True) if value else newest
    if isinstance(version, int) and version > newest:
        raise BadInput(f"{path}: written by a newer w2vprof (schema {version} > {newest}); upgrade w2vprof")


def read_results_csv(path: Path, text: Optional[str] = None, require_rows: bool = True) -> list[ResultRecord]:
    """Read a results file of any schema version (or its `text`), every row checked; BadInput for anything that
    is not one, breaks a rule (see RESULT_RULES), or (when `require_rows`) holds no rows."""
    return read_records(path, ResultRecord, RESULT_RULES, text, require_rows)


def read_layers_csv(path: Path) -> list[LayerRecord]:
    """Read a per-layer file (layers.csv of a profile, <slug>.csv of a sweep); every number >= 0."""
    return read_records(path, LayerRecord, LAYER_RULES)


def read_summary_csv(path: Path) -> list[ModuleSummaryRow]:
    """Read a `w2vprof summary --format csv` file, every row checked (see SUMMARY_RULES); a header alone is no rows."""
    return read_records(path, ModuleSummaryRow, SUMMARY_RULES, require_rows=False)


def replace(record: Any, **changes: Any) -> Any:
    return dataclasses.replace(record, **changes)
