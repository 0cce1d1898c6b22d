"""Device and dtype resolution for ``--device`` and ``--dtype``.

torch is imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

from ..errors import PlantainError

#: ``--dtype`` spellings -> canonical short name.
DTYPE_ALIASES = {
    "bf16": "bf16", "bfloat16": "bf16",
    "fp16": "fp16", "float16": "fp16", "half": "fp16",
    "fp32": "fp32", "float32": "fp32", "float": "fp32",
}
_TORCH_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def resolve_device(device: str | None = "auto") -> str:
    """``auto`` -> ``cuda`` if available, then ``mps``, then ``cpu``; anything else is checked."""
    import torch

    name = (device or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise PlantainError(f"unknown device {device!r}: {exc}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise PlantainError(f"device {device!r} requested but CUDA is not available; use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise PlantainError(f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise PlantainError(f"device {device!r} requested but MPS is not available; use --device cpu or auto")
    return str(dev)


def default_dtype_name(device: str) -> str:
    """bf16 on accelerators (the published weights are bf16), fp32 on CPU (bf16 matmuls are slow there)."""
    return "fp32" if device.startswith("cpu") else "bf16"


def dtype_name(dtype) -> str:
    """Canonical short name (bf16/fp16/fp32) of a torch dtype or a ``--dtype`` spelling."""
    if isinstance(dtype, str):
        key = dtype.strip().lower().removeprefix("torch.")
        if key not in DTYPE_ALIASES:
            raise PlantainError(f"unknown dtype {dtype!r}; use bf16, fp16 or fp32")
        return DTYPE_ALIASES[key]
    text = str(dtype).removeprefix("torch.")
    for short, long in _TORCH_NAMES.items():
        if text == long:
            return short
    raise PlantainError(f"unsupported dtype {dtype!r}; use bf16, fp16 or fp32")


def resolve_dtype(dtype, device: str):
    """A torch dtype from a ``--dtype`` value (None means the device's default)."""
    import torch

    name = default_dtype_name(device) if dtype is None else dtype_name(dtype)
    return getattr(torch, _TORCH_NAMES[name])


def check_dtype_supported(device: str, dtype) -> None:
    """Refuse a dtype the device cannot compute in (e.g. bf16 on an MPS or CPU build
    without it), with one clear message instead of a failure deep inside the model."""
    import torch

    try:
        x = torch.ones(4, 4, device=device, dtype=dtype)
        float((x @ x).sum())
    except (RuntimeError, TypeError, NotImplementedError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PlantainError(
            f"--dtype {dtype_name(dtype)} is not supported on device {device!r} ({reason}); use --dtype fp32"
        ) from None
