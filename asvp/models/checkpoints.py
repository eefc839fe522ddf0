"""Reading user-provided checkpoints and mapping their keys onto a network, strictly.

The official ASVP code strips a fixed prefix from checkpoint keys, drops every key the
network does not know and loads the rest non-strictly, printing only a key count
(``notes/official-code.md`` section 4): a checkpoint of the wrong format silently yields a
randomly initialised network that then gets "fine-tuned". Here, after a backbone's key
mapping, the checkpoint's backbone keys must equal the network's state-dict keys, with equal
shapes; anything else raises :class:`CheckpointFormatError` listing the missing, unexpected
and misshaped keys and the expected format. The one tolerated gap is BatchNorm's
``num_batches_tracked`` counter, absent from checkpoints written before PyTorch 0.4.1: it only
matters for BatchNorm with ``momentum=None`` (unused here), and keeps the network's value.

Files are read with ``torch.load(weights_only=True)``, which accepts dicts of tensors and
plain values (ints, floats, strings: the ``epoch``/``arch``/``optimizer`` entries of training
checkpoints) but refuses arbitrary pickled objects (e.g. an argparse Namespace or a logger
some training scripts save alongside). Such a file is refused with a message naming the
backbone option ``trust_checkpoint: true``, which opts into full unpickling (able to run code
from the file); there is no silent fallback. TorchScript archives (OpenAI's CLIP files) are
read with ``torch.jit.load``, which runs no Python from the file; ``.safetensors`` files with
the safetensors reader.
"""

from __future__ import annotations

import errno
import pickle
import re
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

OPTIONAL_SUFFIX = "num_batches_tracked"
_LISTED = 10  # offending keys named per category


class CheckpointNotFoundError(FileNotFoundError):
    """A backbone's checkpoint file does not exist; says which backbone, where, how to get it."""

    def __init__(self, backbone: str, path: Path, remedy: str) -> None:
        super().__init__(errno.ENOENT, "checkpoint file not found", str(path))
        self.backbone = backbone
        self.path = path
        self.remedy = remedy

    def __str__(self) -> str:
        return (
            f"backbone {self.backbone!r}: checkpoint file {self.path} does not exist; "
            f"get {self.remedy}"
        )

    def __reduce__(self) -> tuple[type, tuple[str, Path, str]]:
        return type(self), (self.backbone, self.path, self.remedy)


class CheckpointFormatError(ValueError):
    """A checkpoint that does not hold the expected backbone weights under the expected keys."""


def is_torchscript_archive(path: Path) -> bool:
    """True for a TorchScript archive (``torch.jit.save``): a zip with ``constants.pkl``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def read_checkpoint(path: Path, *, trust: bool = False) -> Any:
    """The object stored in ``path``: a TorchScript archive's state dict, a safetensors
    file's tensors, or what ``torch.load`` returns (``weights_only`` unless ``trust``)."""
    if is_torchscript_archive(path):
        with warnings.catch_warnings():  # OpenAI's CLIP files have no other reader
            warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as error:
        refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        if refused is None:
            raise _unreadable(path, "its pickle stream cannot be parsed") from error
        raise CheckpointFormatError(
            f"{path}: torch's safe loader (weights_only=True) refused the file: it pickles "
            f"{refused.group(1)}, a Python object besides tensors. If you trust its origin, set "
            "the backbone option trust_checkpoint: true to unpickle it fully (this can run "
            "code stored in the file)"
        ) from error
    except (RuntimeError, EOFError, KeyError) as error:
        first_line = str(error).strip().split("\n", 1)[0][:200]
        raise _unreadable(path, f"{type(error).__name__}: {first_line}") from error


def _unreadable(path: Path, detail: str) -> CheckpointFormatError:
    return CheckpointFormatError(f"{path}: not a PyTorch checkpoint, or a truncated one ({detail})")


def require_mapping(obj: Any, key: str | None, *, source: Path, expected: str) -> Mapping:
    """``obj[key]`` (or ``obj`` itself when ``key`` is None), checked to be a mapping."""
    inner = obj.get(key) if isinstance(obj, Mapping) and key is not None else obj
    if not isinstance(inner, Mapping):
        found = (
            f"top-level keys {sorted(map(str, obj))[:_LISTED]}"
            if isinstance(obj, Mapping)
            else f"a {type(obj).__name__}"
        )
        raise CheckpointFormatError(f"{source}: found {found}; {expected}")
    return inner


def _prefix_counts(
    keys: Iterable[str], network_keys: set[str], rename: Callable[[str], str]
) -> Counter[str]:
    """How many keys end in a network key after each dotted prefix (``''`` for none)."""
    counts: Counter[str] = Counter()
    for key in keys:
        starts = [0] + [i + 1 for i, char in enumerate(key) if char == "."]
        for start in starts:
            if rename(key[start:]) in network_keys:
                counts[key[:start]] += 1
                break
    return counts


def select_prefixed(
    state: Mapping[str, Any],
    prefix: str,
    network: nn.Module,
    *,
    source: Path,
    expected: str,
    rename: Callable[[str], str] = lambda key: key,
) -> dict[str, Any]:
    """The entries whose key starts with ``prefix``, the prefix stripped and ``rename`` applied.

    Other entries belong to other parts of the training model (projector, predictor, target
    network, text tower) and are ignored. No key with the prefix is an error that names the
    prefixes under which the file does hold this network's parameter names.
    """
    selected = {
        rename(key[len(prefix) :]): value
        for key, value in state.items()
        if isinstance(key, str) and key.startswith(prefix)
    }
    if selected:
        return selected
    counts = _prefix_counts(
        (key for key in state if isinstance(key, str)), set(network.state_dict()), rename
    )
    if counts:
        found = ", ".join(f"{prefix!r} ({n} keys)" for prefix, n in counts.most_common(_LISTED))
        hint = f"the file holds this network's parameter names under the prefixes {found}"
    else:
        first = sorted(str(key) for key in state)[:_LISTED]
        hint = f"no key ends in one of this network's parameter names; first keys: {first}"
    raise CheckpointFormatError(f"{source}: no key starts with {prefix!r}; {hint}; {expected}")


def _listing(what: str, items: list[str]) -> str:
    shown = ", ".join(items[:_LISTED])
    more = f", ... ({len(items) - _LISTED} more)" if len(items) > _LISTED else ""
    return f"{len(items)} {what}: {shown}{more}"


def load_strict(
    network: nn.Module, state: Mapping[str, Any], *, source: Path, expected: str
) -> None:
    """Load ``state`` into ``network`` with ``strict=True`` after checking keys and shapes.

    ``state`` must hold exactly the network's keys, each a tensor of the network's shape;
    only BatchNorm ``num_batches_tracked`` may be absent (see the module docstring).
    """
    target = network.state_dict()
    missing = [k for k in target if k not in state and not k.endswith(OPTIONAL_SUFFIX)]
    unexpected = [k for k in state if k not in target]
    misshaped = [
        f"{k} {_shape(state[k])} in the file, {tuple(target[k].shape)} in the network"
        for k in target
        if k in state and _shape(state[k]) != tuple(target[k].shape)
    ]
    if missing or unexpected or misshaped:
        problems = [
            _listing(what, items)
            for what, items in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatches", misshaped),
            )
            if items
        ]
        raise CheckpointFormatError(
            f"{source}: the backbone keys do not match the network ({'; '.join(problems)}; "
            f"BatchNorm num_batches_tracked may be absent, nothing else); {expected}"
        )
    complete = {k: state[k] if k in state else target[k] for k in target}
    network.load_state_dict(complete, strict=True)


def _shape(value: Any) -> tuple[int, ...] | str:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
