"""Loading nnU-Net checkpoints without running code stored in them.

A ``.pth`` file is a pickle: ``torch.load(weights_only=False)`` (what nnU-Net 2.8 uses everywhere) calls whatever
functions the file names, so a crafted checkpoint runs arbitrary code. Every checkpoint this package loads is
therefore read with ``weights_only=True`` and an allow-list of exactly the non-torch types an nnU-Net 2.8 checkpoint
holds (``nnUNetTrainer.save_checkpoint``: tensors, plain containers, ``torch.device``, and NumPy scalars in the
logging lists and ``_best_ema``):

* ``numpy.<_>core.multiarray.scalar`` (how NumPy pickles a scalar, under its NumPy 2 and NumPy 1 module paths) and
  ``numpy.dtype`` with the classes of the boolean, integer and floating dtypes (``numpy.dtypes.Float32DType``, ...),
  which the scalars' dtypes unpickle to. No object, string or structured dtype is allowed.

nnU-Net's own loaders (the predictor's ``initialize_from_trained_model_folder``, the trainer's ``load_checkpoint``,
``load_pretrained_weights``) pass ``weights_only=False`` explicitly; :func:`weights_only_loading` runs them with
PyTorch's ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` switch set, which overrides that argument, so nnU-Net's code is called
unchanged. ``nnUNetv2_train -pretrained_weights`` calls nnU-Net's module-level ``load_pretrained_weights`` from
``nnunetv2.run.run_training``, which no trainer method wraps: :func:`guard_pretrained_weights_loading` (called by our
trainers' ``initialize``, which nnU-Net runs just before that load) replaces that one reference with a wrapper that
calls nnU-Net's function inside :func:`weights_only_loading`.

Not covered: trainers without
:class:`~nnunet_babloss.nnunet.checkpoint_selection.WeightsOnlyCheckpointLoading` (nnU-Net's own trainers,
and here ``GazeSupTrainer``, ``nnUNetTrainerNoLateralMirroring``, ``nnUNetTrainer_BabDemo``) resume and load
``-pretrained_weights`` through nnU-Net's full-pickle loader, and so does ``nnUNetv2_predict`` (use
``nnUNetv2_bab_predict``). Only load checkpoints from trusted sources with those.

Opt-in to unsafe loading: set ``NNUNET_BABLOSS_ALLOW_UNSAFE_CHECKPOINTS=1`` (:data:`UNSAFE_LOAD_ENV_VAR`) to load
checkpoints holding other types with plain pickle (``weights_only=False``), only for files from a source you trust.
Every refusal names the file and this variable.
"""

from __future__ import annotations

import functools
import os
import pickle
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "UNSAFE_LOAD_ENV_VAR",
    "UnsafeCheckpointError",
    "guard_pretrained_weights_loading",
    "load_checkpoint_weights_only",
    "nnunet_checkpoint_safe_globals",
    "require_checkpoint_file_name",
    "unsafe_loading_allowed",
    "weights_only_loading",
]

UNSAFE_LOAD_ENV_VAR = "NNUNET_BABLOSS_ALLOW_UNSAFE_CHECKPOINTS"
_TRUE_VALUES = ("1", "y", "yes", "true")
# PyTorch's switches (read by torch.load on every call): the first forces weights_only=True even where the caller
# passes False; torch refuses to load when both are set.
_FORCE_WEIGHTS_ONLY = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
_FORCE_NO_WEIGHTS_ONLY = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


class UnsafeCheckpointError(ValueError):
    """A checkpoint holds types outside the allow-list of nnU-Net checkpoints and was not loaded."""


def unsafe_loading_allowed(environment: Mapping[str, str] | None = None) -> bool:
    """Whether the user opted in to unsafe (full pickle) loading with :data:`UNSAFE_LOAD_ENV_VAR` (default: no)."""
    environment = os.environ if environment is None else environment
    return environment.get(UNSAFE_LOAD_ENV_VAR, "").strip().lower() in _TRUE_VALUES


def nnunet_checkpoint_safe_globals() -> list[Any]:
    """The allow-list for ``torch.load(weights_only=True)`` of nnU-Net 2.8 checkpoints (see the module docstring).

    Returns:
        Entries for ``torch.serialization.safe_globals``: callables, or ``(callable, "module.name")`` pairs for a
        name under which older files refer to the same callable.
    """
    import numpy as np

    core = getattr(np, "_core", None) or np.core  # NumPy 2 moved numpy.core to numpy._core
    scalar = core.multiarray.scalar
    plain_types = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
                   np.float16, np.float32, np.float64)
    # A dtype unpickles to an instance of its own class (numpy.dtypes.Float32DType, ...), which must be allowed too.
    dtype_classes = list(dict.fromkeys(type(np.dtype(kind)) for kind in plain_types))
    return [
        (scalar, "numpy._core.multiarray.scalar"),  # files written under NumPy 2 ...
        (scalar, "numpy.core.multiarray.scalar"),  # ... and under NumPy 1
        np.dtype,
        *dtype_classes,
    ]


def require_checkpoint_file_name(name: str, parameter: str = "-chk") -> str:
    """Check that ``name`` is a checkpoint file *name* (inside each ``fold_X`` folder), not a path.

    nnU-Net documents ``-chk`` as the name of a file in the model's fold folders; a path would load a file from
    anywhere.

    Returns:
        ``name`` unchanged.

    Raises:
        ValueError: ``name`` is empty, ``.``/``..``, or contains a path separator.
    """
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    if not isinstance(name, str) or name in ("", ".", "..") or any(sep in name for sep in separators):
        raise ValueError(
            f"{parameter} must be the file name of a checkpoint inside the model's fold_X folders (e.g. "
            f"checkpoint_final.pth or checkpoint_best.pth), not a path; got {name!r}"
        )
    return name


def _refusal(what: str, error: Exception) -> ValueError:
    if "Weights only load failed" not in str(error):  # not a refused type: a damaged or foreign file
        return ValueError(f"{what} is not a readable PyTorch checkpoint: {error}")
    # torch's message is long; keep its line naming the refused global or type.
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = next((line for line in lines if "GLOBAL" in line or "Can only build" in line or "Unsupported" in line),
                  lines[-1] if lines else type(error).__name__)
    reason = reason.removeprefix("WeightsUnpickler error:").strip()
    return UnsafeCheckpointError(
        f"{what} was not loaded: it holds more than an nnU-Net checkpoint's tensors, containers and NumPy numbers "
        f"({reason}). Loading it with full pickle could run code stored in the file. Only if you trust the file, set "
        f"{UNSAFE_LOAD_ENV_VAR}=1 to load it anyway."
    )


def _warn_unsafe(what: str) -> None:
    warnings.warn(
        f"{UNSAFE_LOAD_ENV_VAR} is set: {what} is loaded with full pickle (weights_only=False), which runs any code "
        "stored in the file",
        stacklevel=3,
    )


@contextmanager
def _allow_listed() -> Iterator[None]:
    import torch

    if not hasattr(torch.serialization, "safe_globals"):
        raise RuntimeError(
            f"loading checkpoints safely needs torch>=2.5 (torch.serialization.safe_globals); found torch "
            f"{torch.__version__}. Upgrade torch, or set {UNSAFE_LOAD_ENV_VAR}=1 to load trusted checkpoints unsafely"
        )
    # Entering and leaving safe_globals adds and removes the entries: leave out those a caller already allowed.
    present = torch.serialization.get_safe_globals()
    missing = [entry for entry in nnunet_checkpoint_safe_globals() if entry not in present]
    with torch.serialization.safe_globals(missing):
        yield


def load_checkpoint_weights_only(path: str | os.PathLike[str], map_location: Any = "cpu") -> Any:
    """``torch.load`` of an nnU-Net checkpoint with ``weights_only=True`` and the allow-list.

    Args:
        path: the ``.pth`` file.
        map_location: as for ``torch.load`` (default: CPU).

    Returns:
        The checkpoint (a dict for nnU-Net checkpoints).

    Raises:
        FileNotFoundError: ``path`` is not a file.
        UnsafeCheckpointError: the file holds a type outside the allow-list (unless :data:`UNSAFE_LOAD_ENV_VAR`
            is set, which loads it with full pickle and a warning).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if unsafe_loading_allowed():
        _warn_unsafe(str(path))
        return torch.load(path, map_location=map_location, weights_only=False)
    with _allow_listed():
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as error:
            raise _refusal(str(path), error) from None


@contextmanager
def weights_only_loading(what: str) -> Iterator[None]:
    """Run nnU-Net code that calls ``torch.load(weights_only=False)`` with every load forced to weights-only.

    Sets ``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1`` (and lifts ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``) for the duration of
    the block and restores both afterwards; the allow-list is active meanwhile. The variables are process-wide:
    do not load unrelated files from other threads during the block.

    Args:
        what: the file(s) being loaded, for the error message (e.g. ``"checkpoint_final.pth of <folder>"``).

    Raises:
        UnsafeCheckpointError: a load inside the block was refused (it names ``what`` and the opt-in variable).
            With :data:`UNSAFE_LOAD_ENV_VAR` set the block runs unchanged, with a warning.
    """
    if unsafe_loading_allowed():
        _warn_unsafe(what)
        yield
        return
    saved = {name: os.environ.get(name) for name in (_FORCE_WEIGHTS_ONLY, _FORCE_NO_WEIGHTS_ONLY)}
    os.environ[_FORCE_WEIGHTS_ONLY] = "1"
    os.environ.pop(_FORCE_NO_WEIGHTS_ONLY, None)
    try:
        with _allow_listed():
            yield
    except pickle.UnpicklingError as error:
        raise _refusal(what, error) from None
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def guard_pretrained_weights_loading() -> None:
    """Make ``nnUNetv2_train -pretrained_weights`` load the file weights-only (idempotent).

    ``nnunetv2.run.run_training.maybe_load_checkpoint`` calls its module's ``load_pretrained_weights`` (nnU-Net's
    ``torch.load(weights_only=False)``) right after ``trainer.initialize()``. This replaces that module attribute by
    a wrapper that calls nnU-Net's function unchanged inside :func:`weights_only_loading`. Other references to
    ``nnunetv2.run.load_pretrained_weights.load_pretrained_weights`` (imported elsewhere) are left alone.
    """
    from nnunetv2.run import run_training

    nnunet_function = run_training.load_pretrained_weights
    if getattr(nnunet_function, "_weights_only_guard", False):
        return

    @functools.wraps(nnunet_function)
    def load_pretrained_weights(network: Any, fname: str, verbose: bool = False) -> None:
        with weights_only_loading(f"-pretrained_weights {fname}"):
            nnunet_function(network, fname, verbose=verbose)

    load_pretrained_weights._weights_only_guard = True  # type: ignore[attr-defined]
    run_training.load_pretrained_weights = load_pretrained_weights
