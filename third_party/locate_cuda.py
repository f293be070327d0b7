"""Find a real CUDA toolkit root even when `nvcc` on PATH is a wrapper script."""
import glob
import os
import shutil


def _is_toolkit(root):
    if not root or not os.path.isfile(os.path.join(root, "bin", "nvcc")):
        return False
    libs = glob.glob(os.path.join(root, "lib64", "libcudart.so*")) + glob.glob(
        os.path.join(root, "targets", "*", "lib", "libcudart.so*"))
    return bool(libs)


def find_cuda_home():
    """CUDA_HOME / CUDA_PATH if set (trusted as given), else the first real toolkit found."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            return os.environ[var]
    candidates = ["/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    for c in candidates:
        if _is_toolkit(c):
            return c
    return None


if __name__ == "__main__":
    print(find_cuda_home() or "", end="")
