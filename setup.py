"""Builds `refcolor._C` from csrc/: the C++ CPU kernels always, the CUDA kernels when possible.

Environment switches (as in torchvision / pytorch_scatter):
  FORCE_CUDA=1          build the CUDA kernels even when no GPU is visible (e.g. in a container
                        build); fails if torch has no CUDA or nvcc is missing.
  TORCH_CUDA_ARCH_LIST  the GPU architectures (e.g. "8.0;9.0"); default: the visible GPUs', or
                        with none visible cuda_arch.DEFAULT_ARCHS. Compute capability 6.0 at least.
  REFCOLOR_NO_CUDA=1    never build the CUDA kernels.
  REFCOLOR_NO_EXT=1     build no compiled extension at all (pure-Python install; every op then
                        runs its reference or Triton path).
  MAX_JOBS=N            parallel compile jobs (torch.utils.cpp_extension).
"""

import glob
import importlib.util
import os

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _cuda_arch():
    # By path: setup.py's folder is not always on sys.path (isolated and editable builds).
    spec = importlib.util.spec_from_file_location("cuda_arch", os.path.join(ROOT, "cuda_arch.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flag(name):
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def _want_cuda(torch, cuda_home):
    if _flag("REFCOLOR_NO_CUDA"):
        return False
    if _flag("FORCE_CUDA"):
        if torch.version.cuda is None:
            raise RuntimeError("FORCE_CUDA=1 but the installed torch has no CUDA support")
        if cuda_home is None:
            raise RuntimeError("FORCE_CUDA=1 but no CUDA toolkit (nvcc) was found; set CUDA_HOME")
        return True
    return torch.version.cuda is not None and torch.cuda.is_available() and cuda_home is not None


def _extensions():
    if _flag("REFCOLOR_NO_EXT"):
        return [], {}
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    def rel(pattern):
        return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern), recursive=True))

    # Every .cpp outside a cuda/ folder: module, op schemas, CPU kernels. cuda/ holds the CUDA
    # kernels (.cu, torch-free) and their torch glue (.cpp), built only with CUDA.
    is_cuda = lambda path: f"{os.sep}cuda{os.sep}" in path  # noqa: E731
    sources = [p for p in rel("csrc/**/*.cpp") if not is_cuda(p)]
    # -fno-trapping-math: no kernel reads floating-point exception flags, and without it GCC may not
    # turn comparisons/selects into vector blends (it changes no results, unlike -ffast-math).
    cxx = ["-O3", "-fno-trapping-math", "-fopenmp"] if os.name != "nt" else ["/O2", "/openmp"]
    extra = {"cxx": cxx}
    define_macros = []
    ext_cls = CppExtension
    if _want_cuda(torch, CUDA_HOME):
        ext_cls = CUDAExtension
        cuda_arch = _cuda_arch()
        archs = cuda_arch.arch_list(
            os.environ.get("TORCH_CUDA_ARCH_LIST"), torch.cuda.is_available(), cuda_arch.nvcc_archs(CUDA_HOME)
        )
        if archs is not None:
            os.environ["TORCH_CUDA_ARCH_LIST"] = archs
            print(f"refcolor: building CUDA kernels for TORCH_CUDA_ARCH_LIST={archs}")
        sources += [p for p in rel("csrc/**/*.cpp") if is_cuda(p)] + rel("csrc/**/cuda/*.cu")
        define_macros.append(("WITH_CUDA", None))
        extra["nvcc"] = ["-O3", "--expt-relaxed-constexpr"]
    ext = ext_cls(
        "refcolor._C",
        sources,
        include_dirs=[os.path.join(ROOT, "csrc")],
        define_macros=define_macros,
        extra_compile_args=extra,
        extra_link_args=["-fopenmp"] if os.name != "nt" else [],
    )
    return [ext], {"build_ext": BuildExtension.with_options(no_python_abi_suffix=False)}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
