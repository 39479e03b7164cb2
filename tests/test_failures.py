"""The failure classifier on recorded error text: real messages from CUDA, MPS, Jetson (cuBLAS, cuDNN, NvMap, NVML)
and the host, as exceptions and as the stderr of a failed child. Fast: no torch, no subprocess."""

from __future__ import annotations

import pytest

from w2vprof.measure.failures import MAX_LINE, classify_error_text, classify_exception, is_oom_text

# One line of each as the program printed it (numbers and paths as recorded).
OOM_MESSAGES = {
    "cuda caching allocator": "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a "
    "total capacity of 7.79 GiB of which 3.44 MiB is free. Including non-PyTorch memory, this process has 7.78 GiB "
    "memory in use.",
    "cuda caching allocator, torch < 2.5": "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate "
    "2.00 GiB (GPU 0; 7.79 GiB total capacity; 6.20 GiB already allocated; 1.02 GiB free; 6.30 GiB reserved in total "
    "by PyTorch)",
    "cuda runtime": "RuntimeError: CUDA error: out of memory",
    "cuda driver (expandable segments)": "RuntimeError: CUDA driver error: out of memory",
    "mps": "RuntimeError: MPS backend out of memory (MPS allocated: 1.59 GB, other allocations: 7.78 GB, max "
    "allowed: 9.07 GB). Tried to allocate 1.00 GB on private pool. Use PYTORCH_MPS_HIGH_WATERMARK_RATIO=0.0 to "
    "disable upper limit for memory allocations (may cause system failure).",
    "cublas (jetson)": "RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
    "cudnn 8": "RuntimeError: cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
    "cudnn 9": "RuntimeError: cuDNN error: CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED",
    "nvml assert on tegra": 'RuntimeError: NVML_SUCCESS == r INTERNAL ASSERT FAILED at "../c10/cuda/'
    'CUDACachingAllocator.cpp":830, please report a bug to PyTorch.',
    "cpu allocator": "RuntimeError: DefaultCPUAllocator: can't allocate memory: you tried to allocate 21474836480 "
    "bytes. Error code 12 (Cannot allocate memory)",
    "cpu allocator, windows": "RuntimeError: [enforce fail at alloc_cpu.cpp:114] data. DefaultCPUAllocator: not "
    "enough memory: you tried to allocate 8589934592 bytes.",
    "enomem": "OSError: [Errno 12] Cannot allocate memory",
    "python": "MemoryError",
    "c++": "RuntimeError: std::bad_alloc",
}

NOT_OOM_MESSAGES = {
    "mps float64": "TypeError: Cannot convert a MPS Tensor to float64 dtype as the MPS framework doesn't support "
    "float64. Please use float32 instead.",
    "illegal access": "RuntimeError: CUDA error: an illegal memory access was encountered",
    "cublas not initialized": "RuntimeError: CUDA error: CUBLAS_STATUS_NOT_INITIALIZED when calling "
    "`cublasCreate(handle)`",
    "cudnn not initialized": "RuntimeError: cuDNN error: CUDNN_STATUS_NOT_INITIALIZED",
    "cudnn bad param": "RuntimeError: cuDNN error: CUDNN_STATUS_BAD_PARAM_STREAM_MISMATCH",
    "shape": "RuntimeError: mat1 and mat2 shapes cannot be multiplied (4x3 and 4x3)",
}


@pytest.mark.parametrize("line", OOM_MESSAGES.values(), ids=OOM_MESSAGES.keys())
def test_every_recorded_oom_line_is_oom_and_kept_as_the_line(line):
    assert classify_error_text(line) == ("oom", line[:MAX_LINE])
    assert is_oom_text(line)


@pytest.mark.parametrize("line", NOT_OOM_MESSAGES.values(), ids=NOT_OOM_MESSAGES.keys())
def test_other_failures_are_errors(line):
    assert classify_error_text(line) == ("error", line)
    assert not is_oom_text(line)


def _traceback(*exception_lines: str) -> str:
    return "\n".join(
        [
            "Traceback (most recent call last):",
            '  File "/usr/lib/python3.10/site-packages/w2vprof/sweep/child.py", line 112, in forked_entry',
            "    code = measure(config_json, result_path)",
            '  File "/usr/lib/python3.10/site-packages/torch/nn/modules/linear.py", line 116, in forward',
            "    return F.linear(input, self.weight, self.bias)",
            "           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
            *exception_lines,
        ]
    )


def test_a_child_traceback_gives_the_exception_line_not_the_advice_after_it():
    text = _traceback(
        "RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
        "CUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace below might "
        "be incorrect.",
        "For debugging consider passing CUDA_LAUNCH_BLOCKING=1",
        "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.",
        "",
    )
    assert classify_error_text(text) == (
        "oom",
        "RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
    )


def test_a_non_memory_cuda_error_keeps_its_first_line():
    text = _traceback(
        "RuntimeError: CUDA error: an illegal memory access was encountered",
        "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.",
    )
    assert classify_error_text(text) == ("error", "RuntimeError: CUDA error: an illegal memory access was encountered")


def test_only_the_final_exception_of_a_chained_traceback_decides():
    first = _traceback("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    text = (
        first
        + "\n\nDuring handling of the above exception, another exception occurred:\n\n"
        + _traceback("KeyError: 'batch'")
    )
    assert classify_error_text(text) == ("error", "KeyError: 'batch'")


def test_nvmap_enomem_beside_a_cuda_failure_is_oom_with_both_in_the_line():
    text = "\n".join(
        [
            "NvMapMemAllocInternalTagged: 1075072515 error 12",
            "NvMapMemHandleAlloc: error 0",
            _traceback("RuntimeError: CUDA error: unspecified launch failure"),
        ]
    )
    status, line = classify_error_text(text)
    assert status == "oom"
    assert (
        line == "RuntimeError: CUDA error: unspecified launch failure (after NvMapMemAllocInternalTagged: "
        "1075072515 error 12)"
    )


def test_nvmap_noise_does_not_make_an_unrelated_python_error_an_oom():
    text = "NvMapMemAllocInternalTagged: 1075072515 error 12\n" + _traceback(
        "TypeError: 'NoneType' object is not iterable"
    )
    assert classify_error_text(text) == ("error", "TypeError: 'NoneType' object is not iterable")


def test_a_native_death_with_only_nvmap_lines_is_oom():
    text = "NvMapMemHandleAlloc failed: error 12\nNvMapMemHandleAlloc: error 0\n"
    assert classify_error_text(text) == ("oom", "NvMapMemHandleAlloc failed: error 12")


def test_nvmap_errors_other_than_enomem_are_not_memory():
    assert classify_error_text("NvMapMemHandleAlloc: error 0\nNvMapMemHandleAlloc: error 5")[0] == "error"


def test_a_native_abort_without_traceback_is_found_by_its_signature():
    text = "\n".join(
        [
            "terminate called after throwing an instance of 'c10::OutOfMemoryError'",
            "  what():  CUDA out of memory. Tried to allocate 512.00 MiB",
            "Exception raised from malloc at ../c10/cuda/CUDACachingAllocator.cpp:1016 (most recent call first):",
            "frame #0: c10::Error::Error(c10::SourceLocation, std::string) + 0x57 (0x7f in libc10.so)",
        ]
    )
    assert classify_error_text(text) == ("oom", "what():  CUDA out of memory. Tried to allocate 512.00 MiB")


def test_empty_text_is_an_error_with_no_line():
    assert classify_error_text("") == ("error", "")


def test_long_lines_are_clipped():
    status, line = classify_error_text("RuntimeError: " + "x" * 1000)
    assert status == "error" and len(line) == MAX_LINE


class OutOfMemoryError(RuntimeError):
    """Stands in for torch.OutOfMemoryError (the class name decides, so no torch is needed)."""


def test_exceptions_named_out_of_memory_are_oom_whatever_they_say():
    assert classify_exception(OutOfMemoryError("Tried to allocate 2.00 GiB")) == (
        "oom",
        "OutOfMemoryError: Tried to allocate 2.00 GiB",
    )
    assert classify_exception(MemoryError()) == ("oom", "MemoryError")


def test_exception_subclasses_of_an_oom_class_are_oom():
    class CudaOom(OutOfMemoryError):
        pass

    assert classify_exception(CudaOom("x"))[0] == "oom"


def test_an_exception_keeps_the_first_line_of_its_message():
    exc = RuntimeError(
        "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`\n"
        "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions."
    )
    assert classify_exception(exc) == (
        "oom",
        "RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
    )


def test_a_type_error_is_an_error_with_its_type():
    exc = TypeError("Cannot convert a MPS Tensor to float64 dtype as the MPS framework doesn't support float64.")
    assert classify_exception(exc) == (
        "error",
        "TypeError: Cannot convert a MPS Tensor to float64 dtype as the MPS framework doesn't support float64.",
    )


def test_a_signature_on_a_later_line_of_an_exception_still_names_the_type():
    exc = RuntimeError("step failed\nCUDA out of memory. Tried to allocate 8.00 MiB")
    assert classify_exception(exc) == ("oom", "RuntimeError: CUDA out of memory. Tried to allocate 8.00 MiB")


# Flower's error replies, as vce_api.py / run_clientapp.py format them (deployed, and simulated with Ray's wrapper)
def test_a_flower_reply_from_a_deployed_client_is_classified_by_its_exception():
    reason = "<class 'torch.OutOfMemoryError'>:<'CUDA out of memory. Tried to allocate 20.00 MiB'>"
    assert classify_error_text(reason) == ("oom", "OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB")
    assert classify_error_text("<class 'MemoryError'>:<''>") == ("oom", "MemoryError:")
    assert classify_error_text("<class 'ZeroDivisionError'>:<'division by zero'>") == (
        "error",
        "ZeroDivisionError: division by zero",
    )


def test_a_flower_reply_from_a_simulated_client_loses_the_wrapper():
    reason = (
        "<class 'flwr.clientapp.client_app.ClientAppException'>:<'\nException ClientAppException occurred. "
        "Message: MPS backend out of memory (MPS allocated: 1.59 GB, other allocations: 7.78 GB)'>"
    )
    assert classify_error_text(reason) == (
        "oom",
        "MPS backend out of memory (MPS allocated: 1.59 GB, other allocations: 7.78 GB)",
    )
