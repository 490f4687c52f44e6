"""Torch model files, loaded without running code from the file unless the caller trusts it (torch's convention
since 2.6: ``weights_only=True``).

- a state dict (``torch.save(model.state_dict())``) plus ``model_class="package.module:Class"``: loaded with
  ``weights_only=True``; the class is the caller's own code, imported by name;
- a ``torch.export`` program (``torch.export.save``, ``.pt2``): every pickled member of the archive must load
  with ``weights_only=True`` (pickled custom or opaque objects are refused), then the program is rebuilt as a
  module of standard layers (``snnc.frontend.exported``);
- a whole pickled ``nn.Module`` (``torch.save(model)``): unpickling it runs code named in the file, so it loads
  only with ``trust_pickle=True`` (CLI: ``--trust-pickle``); without it the refusal names the classes the file
  would import and says how to save a safe file instead."""
from __future__ import annotations

import importlib
import io
import json
import logging
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

from snnc.ir.errors import DataError, UnsupportedLayerError, one_line

TRUST_HINT = ("pass --trust-pickle (Python: trust_pickle=True) only if you trust the file, or save a state dict "
              "(torch.save(model.state_dict()), with --model-class package.module:Class) or a torch.export program "
              "(torch.export.save(torch.export.export(model, (x,)), 'model.pt2'))")


def load_model(path: str | os.PathLike, model_class: str | None = None, trust_pickle: bool = False) -> Any:
    """The model in ``path`` in eval mode (see the module docstring); DataError naming the file otherwise."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such model file")
    if not p.is_file():
        raise DataError(f"{p}: is not a file (expected a torch model file)")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise DataError(f"{p}: cannot read the model file ({e.strerror or e})") from None
    if is_export_archive(data):
        return load_exported(p, data, trust_pickle)
    obj = _torch_load(p, data, trust_pickle)
    import torch

    if isinstance(obj, torch.nn.Module):
        return obj.eval()
    if isinstance(obj, dict):
        return _from_state_dict(p, obj, model_class)
    raise UnsupportedLayerError(f"{p}: holds a {type(obj).__name__}, expected an nn.Module, a state dict or a "
                                "torch.export program")


def is_export_archive(data: bytes) -> bool:
    """A zip whose ``*/archive_format`` member says ``pt2`` (what ``torch.export.save`` writes)."""
    if not data.startswith(b"PK"):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            fmt = [n for n in z.namelist() if n.split("/", 1)[-1] == "archive_format"]
            return bool(fmt) and z.read(fmt[0]).strip() == b"pt2"
    except (zipfile.BadZipFile, OSError, KeyError, ValueError):
        return False


def _torch_load(p: Path, data: bytes, trust_pickle: bool) -> Any:
    import torch

    if data.startswith(b"\x89HDF\r\n\x1a\n"):
        raise DataError(f"{p}: is an HDF5 file, not a torch model (an NIR graph is read when its name ends in .nir)")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if m is None:
            why = re.search(r"WeightsUnpickler error:\s*(.+)", str(e))
            raise DataError(f"{p}: not a loadable torch file "
                            f"({why.group(1).strip() if why else one_line(e, 300)})") from None
        if not trust_pickle:
            raise DataError(f"{p}: a pickled Python object (torch.save(model)) that imports "
                            f"{_unsafe_globals(data, m.group(1))}; unpickling it runs code from the file: "
                            + TRUST_HINT) from None
    except Exception as e:
        raise DataError(f"{p}: not a loadable torch file ({type(e).__name__}: {one_line(e, 300)})") from None
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as e:
        raise DataError(f"{p}: not a loadable torch file ({type(e).__name__}: {one_line(e, 300)})") from None


def _unsafe_globals(data: bytes, first: str) -> str:
    """The classes/functions a torch pickle would import, read without unpickling (torch's own scanner; ``first``:
    the one torch's weights-only unpickler stopped at)."""
    import torch

    try:
        names = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data)),
                       key=lambda n: (n.startswith("torch."), n))
    except Exception:  # a legacy (non-zip) checkpoint: only the first one is known
        names = [first]
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _from_state_dict(p: Path, sd: dict, model_class: str | None) -> Any:
    if not model_class:
        raise DataError(f"{p}: holds a state dict; pass --model-class package.module:Class to build the model")
    mod_name, _, cls_name = model_class.partition(":")
    try:
        cls = getattr(importlib.import_module(mod_name), cls_name)
        model = cls()
    except Exception as e:
        raise DataError(f"--model-class {model_class!r}: cannot import and build the class "
                        f"({type(e).__name__}: {one_line(e, 300)})") from None
    try:
        model.load_state_dict(sd)
    except Exception as e:
        raise DataError(f"{p}: state dict does not fit {model_class}: {one_line(e, 300)}") from None
    return model.eval()


def load_exported(p: Path, data: bytes, trust_pickle: bool = False) -> Any:
    """A ``torch.export.save`` archive as a module of standard layers; pickled members must be weights-only."""
    import torch

    if not trust_pickle:
        unsafe = _unsafe_members(p, data)
        if unsafe:
            raise DataError(f"{p}: torch.export archive member(s) {', '.join(unsafe[:3])} need pickle code to load. "
                            + TRUST_HINT)
    quiet = logging.getLogger("torch.export")  # torch logs a damaged archive's traceback before it raises
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        ep = torch.export.load(io.BytesIO(data))
    except Exception as e:
        raise DataError(f"{p}: not a loadable torch.export program ({type(e).__name__}: {one_line(e, 300)})") from None
    finally:
        quiet.setLevel(level)
    from snnc.frontend.exported import as_module

    return as_module(ep)


def _unsafe_members(p: Path, data: bytes) -> list[str]:
    """Archive members torch.export.load would unpickle beyond weights: pickled weights/constants and sample
    inputs that do not load with weights_only=True, and custom/opaque objects (always arbitrary pickle)."""
    import torch

    bad = []
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = z.namelist()
            pickled = [n for n in names if n.endswith(".pt")]
            for cfg in (n for n in names if n.endswith("_config.json") and "/data/" in f"/{n}"):
                folder = cfg.rpartition("/")[0]
                entries = json.loads(z.read(cfg)).get("config", {})
                for meta in entries.values():
                    member = f"{folder}/{meta.get('path_name', '')}"
                    if str(meta.get("path_name", "")).startswith(("custom_obj_", "opaque_obj_")):
                        bad.append(member)
                    elif meta.get("use_pickle"):
                        pickled.append(member)
            for n in pickled:
                try:
                    torch.load(io.BytesIO(z.read(n)), map_location="cpu", weights_only=True)
                except Exception:
                    bad.append(n)
    except Exception as e:  # a damaged zip or config: refuse by name rather than let torch try it
        raise DataError(f"{p}: damaged torch.export archive ({type(e).__name__}: {one_line(e, 300)})") from None
    return bad
