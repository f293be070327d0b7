"""Locate the CUTLASS/CuTe headers: ADASPA_CUTLASS_DIR, else the nvidia-cutlass wheel."""
import importlib.util
import os
import pathlib

PINNED = "nvidia-cutlass==4.2.0.0"


def include_dir():
    """Directory containing cute/ and cutlass/, or raise with install instructions."""
    env = os.environ.get("ADASPA_CUTLASS_DIR")
    if env:
        p = pathlib.Path(env)
        if not (p / "cute" / "tensor.hpp").is_file():
            raise FileNotFoundError(f"ADASPA_CUTLASS_DIR={env} does not contain cute/tensor.hpp")
        return str(p)
    spec = importlib.util.find_spec("cutlass_library")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            p = pathlib.Path(loc) / "source" / "include"
            if (p / "cute" / "tensor.hpp").is_file():
                return str(p)
    raise FileNotFoundError(
        "CUTLASS/CuTe headers not found. Install the pinned wheel with "
        f"`pip install --no-deps {PINNED}` or set ADASPA_CUTLASS_DIR to a directory holding cute/ and cutlass/.")


if __name__ == "__main__":
    print(include_dir(), end="")
