"""Load the compiled library adaspa_ext._C, or say in one line how to get it."""
from __future__ import annotations

import functools
import importlib
import importlib.machinery
import pathlib

_PKG = pathlib.Path(__file__).resolve().parent


def _how_to_build() -> str:
    root = _PKG.parent
    if (root / "setup.py").is_file() and (root / "csrc").is_dir():  # a source tree
        return (f"build it with `make demo` (or `make build-demo`) in {root}, or "
                f"`pip install --no-build-isolation -e {root}` into an environment that has torch")
    return "reinstall adaspa_ext (see its README: Install)"


@functools.lru_cache(maxsize=None)
def load_C():
    """Import adaspa_ext._C (registers the torch.ops.adaspa ops) and return the module."""
    import torch  # noqa: F401  (the library links against torch's shared libraries)
    try:
        return importlib.import_module("adaspa_ext._C")
    except ImportError as e:
        built = [p.name for p in _PKG.glob("_C*") if p.suffix in (".so", ".pyd")]
        usable = [n for n in built if any(n.endswith(s) for s in importlib.machinery.EXTENSION_SUFFIXES)]
        if not built:
            msg = f"adaspa_ext is not built (no compiled adaspa_ext._C in {_PKG}): {_how_to_build()}."
        elif not usable:
            msg = (f"adaspa_ext._C was built for another Python ({', '.join(built)}; this Python loads "
                   f"{importlib.machinery.EXTENSION_SUFFIXES[0]}): {_how_to_build()}.")
        else:
            msg = (f"adaspa_ext._C failed to load ({e}) into torch {torch.__version__} (CUDA {torch.version.cuda}). "
                   "A stable-ABI build (the default) loads into torch 2.10 and later built for the CUDA major "
                   "of its version label (e.g. +cu130); a classic one (ADASPA_STABLE_ABI=0) only into the torch "
                   f"release it was compiled against. Otherwise {_how_to_build()}.")
        raise ImportError(msg, name="adaspa_ext._C") from None
