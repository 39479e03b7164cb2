"""The choice of workload from the user's options: which kind of batches a configuration trains on.

Its own module because it knows every kind (synthetic, length distribution, audio) while each kind knows only
w2vprof.workload.base: the kinds never import the factory, so there is no import loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from w2vprof.errors import SettingError
from w2vprof.workload.audio import AudioWorkload
from w2vprof.workload.base import SyntheticWorkload, Workload
from w2vprof.workload.lengths import LengthDistributionWorkload, parse_length_dist

__all__ = ["make_workload", "workload_name"]


def workload_name(audio: Optional[Union[str, Path]] = None, length_dist: Optional[str] = None) -> str:
    """The `workload` column a configuration will get, without reading any audio (sweep's resume key)."""
    if audio is not None:
        return f"audio:{Path(audio).resolve().name}"
    if length_dist is not None:
        return f"synthetic:{parse_length_dist(length_dist).label}"
    return "synthetic"


def make_workload(
    seconds: float,
    audio: Optional[Path] = None,
    clips_dir: Optional[Path] = None,
    max_seconds: Optional[float] = None,
    length_dist: Optional[str] = None,
) -> Workload:
    """The workload the user asked for: synthetic fixed length unless audio or a length distribution is given.

    Reading a folder probes every file's header (cheap); audio is decoded only when a batch needs it.
    """
    if max_seconds is not None and not float(max_seconds) > 0:
        raise SettingError("max_seconds", f"must be a positive number, got {max_seconds!r}")
    if audio is not None and length_dist is not None:
        raise SettingError("length_dist", "cannot be combined with {audio}: real audio has its own lengths", ("audio",))
    if clips_dir is not None and audio is None:
        raise SettingError("clips_dir", "needs {audio} MANIFEST.tsv", ("audio",))
    if audio is not None:
        return AudioWorkload(audio, clips_dir=clips_dir, max_seconds=max_seconds)
    if length_dist is not None:
        return LengthDistributionWorkload(parse_length_dist(length_dist), max_seconds=max_seconds)
    if max_seconds is not None and float(max_seconds) < float(seconds):
        # Cropping every fixed-length utterance would silently profile a different length than recorded.
        raise SettingError(
            "max_seconds",
            f"{float(max_seconds):g} is shorter than {{seconds}} {float(seconds):g}: "
            "for fixed-length batches set {seconds} instead",
            ("seconds",),
        )
    return SyntheticWorkload(seconds)
