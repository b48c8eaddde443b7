"""Refuse model and checkpoint files that could run code when loaded (pickle and friends).

deeprec itself never unpickles: tensors live in safetensors files, everything else in JSON,
and NumPy arrays are read with ``allow_pickle=False``. This module gives a clear message when
someone points deeprec at a pickle-based file (a PyTorch ``.pt``/``.pth``/``.ckpt``, a
``.pkl``, a joblib dump) instead of failing somewhere deep inside a parser, and offers one
explicit, opt-in way to read a plain PyTorch state_dict: ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import struct
from pathlib import Path

from deeprec.errors import CheckpointError

PICKLE_SUFFIXES = frozenset(
    {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".bin", ".dill", ".sav", ".tar"}
)
# First opcodes of pickles: PROTO (protocol >= 2), and what protocol 0/1 streams usually open
# with (GLOBAL 'c', MARK '(', EMPTY_DICT '}', EMPTY_LIST ']', EMPTY_TUPLE ')').
_PICKLE_START = frozenset(b"c(}])")
_ZIP_MAGIC = b"PK\x03\x04"


def sniff(path: str | Path) -> str:
    """What a file looks like from its first bytes: 'pickle', 'torch-zip', 'safetensors',
    'json', 'empty' or 'unknown'. Reads at most 16 bytes; never parses the file."""
    with open(path, "rb") as handle:
        head = handle.read(16)
        size = handle.seek(0, 2)
    if not head:
        return "empty"
    # safetensors first: a header length like 0x0380 starts with the bytes 0x80 0x03, which
    # would also read as a pickle PROTO opcode. (A real pickle's first 8 bytes, read as a
    # little-endian length, are far larger than the file, so it is never taken for one.)
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 8 + header_len <= size:
            return "safetensors"
    if head[0] == 0x80 and len(head) > 1 and 1 <= head[1] <= 5:
        return "pickle"
    if head.startswith(_ZIP_MAGIC):
        return "torch-zip"
    if head.lstrip()[:1] in (b"{", b"["):
        return "json"
    if head[0] in _PICKLE_START:
        return "pickle"
    return "unknown"


def refuse_pickle(path: str | Path, *, what: str = "model or checkpoint") -> None:
    """Raise CheckpointError if `path` is a pickle-based file (by suffix or first bytes).

    Called wherever deeprec accepts a model or checkpoint path, before anything parses it.
    """
    path = Path(path)
    if not path.is_file():
        return
    kind = sniff(path)
    if path.suffix.lower() in PICKLE_SUFFIXES or kind in ("pickle", "torch-zip"):
        detail = {
            "pickle": "it is a Python pickle",
            "torch-zip": "it is a PyTorch torch.save archive (a zip holding a pickle)",
        }.get(kind, f"its suffix {path.suffix!r} is a pickle-based format")
        raise CheckpointError(
            f"refusing to load {path} as a {what}: {detail}, and unpickling can run "
            "arbitrary code. deeprec loads only safetensors + JSON (a model directory with "
            "model.json and weights.safetensors, or a run's checkpoints/*.safetensors). "
            "To import a plain PyTorch state_dict you trust, use "
            "deeprec.safe_files.load_torch_state_dict(path, weights_only=True)."
        )


def require_safetensors(path: str | Path, *, what: str = "checkpoint") -> None:
    """Refuse pickles with the message above, and anything else that is not safetensors."""
    refuse_pickle(path, what=what)
    kind = sniff(path)
    if kind != "safetensors":
        raise CheckpointError(
            f"{path} is not a safetensors file (it looks {kind}); cannot load it as a {what}"
        )


def load_torch_state_dict(path: str | Path, *, weights_only: bool) -> dict:
    """Read a plain PyTorch state_dict (tensors only) from a torch.save file.

    Opt-in: `weights_only` must be passed as True, which makes torch use its restricted
    unpickler (tensors, primitive containers; no arbitrary classes or calls). Anything
    else in the file is refused with CheckpointError.
    """
    import pickle

    import torch

    if weights_only is not True:
        raise CheckpointError(
            f"refusing to load {path}: pickle-based files are only read with weights_only=True"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a plain PyTorch state_dict ({exc})") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"{path}: expected a flat dict of name -> tensor")
    return state
