"""Reading user-provided checkpoints and mapping their keys onto a network, strictly.

The official ASVP code strips a fixed prefix from checkpoint keys, drops every key the
network does not know and loads the rest non-strictly, printing only a key count
(``docs/official-code.md`` section 4): a checkpoint of the wrong format silently yields a
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
read with ``torch.jit.load``, which runs no Python from the file; safetensors files (by
their header, or a ``.safetensors`` name) with the safetensors reader.

Every refusal names the file, what it was found to hold (an empty file, text or bytes that no
checkpoint reader reads, a zip that is no PyTorch archive, a truncated pickle, a dict with
these top-level keys, a dict of tensors whose keys match nothing) and the formats the backbone
accepts (``expected ...``, written by each backbone), so that the message alone says what to
fetch instead.
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


def read_checkpoint(path: Path, *, expected: str, trust: bool = False) -> Any:
    """The object stored in ``path``: a TorchScript archive's state dict, a safetensors
    file's tensors, or what ``torch.load`` returns (``weights_only`` unless ``trust``).

    A file none of these readers can read raises :class:`CheckpointFormatError` with the file,
    what it holds (an empty file, text, a zip that is no PyTorch archive, a truncated pickle)
    and ``expected``: the formats the backbone accepts (``expected a BYOL-EMAN checkpoint:
    ...``).
    """
    kind = _file_kind(path, expected)
    if kind == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except SafetensorError as error:
            raise _unreadable(path, "a safetensors file", error, expected) from error
    if is_torchscript_archive(path):
        with warnings.catch_warnings():  # OpenAI's CLIP files have no other reader
            warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as error:
        refused = re.search(r"Unsupported global: GLOBAL (\w[\w.]*\.\w+)", str(error))
        if refused is None:
            raise _unreadable(path, kind, error, expected) from error
        raise CheckpointFormatError(
            f"{path}: torch's safe loader (weights_only=True) refused the file: it pickles "
            f"{refused.group(1)}, a Python object besides tensors. If you trust its origin, set "
            "the backbone option trust_checkpoint: true to unpickle it fully (this can run "
            "code stored in the file)"
        ) from error
    except (RuntimeError, EOFError, KeyError, ValueError) as error:
        raise _unreadable(path, kind, error, expected) from error


_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_MAGIC = b"\x80"  # pickle protocol 2 or later: what torch.save writes outside a zip
_HEAD = 48  # bytes of an unreadable file shown in the message


def _file_kind(path: Path, expected: str) -> str:
    """What ``path`` holds by its first bytes: ``a PyTorch zip archive``, ``a pickle`` or
    ``safetensors``; :class:`CheckpointFormatError` (naming what it is instead, and
    ``expected``) for anything no checkpoint reader reads."""
    with path.open("rb") as file:
        head = file.read(_HEAD)
    size = path.stat().st_size
    if size == 0:
        found = "an empty file (0 bytes: an interrupted download or copy?)"
    elif head.startswith(_ZIP_MAGIC):
        found = _zip_problem(path)
        if found is None:
            return "a PyTorch zip archive"
    elif head.startswith(_PICKLE_MAGIC):
        return "a pickle"
    elif _is_safetensors(head, size) or path.suffix == ".safetensors":
        return "safetensors"
    else:
        found = f"a file of {size} bytes that is not a pickle, zip or safetensors file" + (
            f": text starting {_text_start(head)!r}" if _is_text(head) else f": {head[:16]!r}..."
        )
    raise CheckpointFormatError(f"{path}: found {found}; {expected}")


def _zip_problem(path: Path) -> str | None:
    """Why the zip file ``path`` is no PyTorch archive (no ``data.pkl`` or ``constants.pkl``
    inside a folder), or None if it is one."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile as error:
        return f"a zip file that cannot be opened, a truncated or corrupt one? ({error})"
    if any(name.endswith(("/data.pkl", "/constants.pkl")) for name in names):
        return None
    listed = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return f"a zip archive that is not a PyTorch checkpoint (it holds {listed or 'nothing'})"


def _is_safetensors(head: bytes, size: int) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then a JSON header."""
    if len(head) < 9:
        return False
    length = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 8 + length <= size


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(char.isprintable() or char.isspace() for char in text)


def _text_start(head: bytes) -> str:
    return " ".join(head.decode("utf-8").split())[:40]


def _unreadable(path: Path, kind: str, error: Exception, expected: str) -> CheckpointFormatError:
    first_line = str(error).strip().split("\n", 1)[0][:200]
    detail = f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__
    return CheckpointFormatError(
        f"{path}: found {kind} that cannot be read to the end ({detail}): a truncated or "
        f"corrupt file?; {expected}"
    )


def describe_contents(obj: Any) -> str:
    """What a checkpoint file holds, in words: ``a dict of 3 tensors (keys: ...)``, ``a dict
    with top-level keys [...]`` (naming those that hold dicts: the weights may be inside),
    or the type of anything else."""
    if not isinstance(obj, Mapping):
        return f"a {type(obj).__name__}, not a dict"
    keys = sorted(map(str, obj))
    if obj and all(isinstance(value, torch.Tensor) for value in obj.values()):
        plural = "s" if len(obj) != 1 else ""
        return f"a dict of {len(obj)} tensor{plural} (first keys: {keys[:_LISTED]})"
    nested = sorted(str(key) for key, value in obj.items() if isinstance(value, Mapping))
    inside = f" (dicts under {nested[:_LISTED]}: are the weights in one?)" if nested else ""
    return f"a dict with top-level keys {keys[:_LISTED]}{inside}"


def require_mapping(obj: Any, key: str | None, *, source: Path, expected: str) -> Mapping:
    """``obj[key]`` (or ``obj`` itself when ``key`` is None), checked to be a mapping."""
    inner = obj.get(key) if isinstance(obj, Mapping) and key is not None else obj
    if not isinstance(inner, Mapping):
        raise CheckpointFormatError(f"{source}: found {describe_contents(obj)}; {expected}")
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
        hint = (
            f"found {describe_contents(state)}; no key ends in one of this network's "
            "parameter names"
        )
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
    if state and not any(key in target for key in state):
        raise CheckpointFormatError(
            f"{source}: found {describe_contents(state)}; none of its keys is a parameter of "
            f"this network (which has {len(target)}, e.g. {list(target)[:3]}); {expected}"
        )
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
