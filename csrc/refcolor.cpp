// Python module `refcolor._C`. Importing it registers every compiled op with the torch dispatcher
// (TORCH_LIBRARY_FRAGMENT / TORCH_LIBRARY_IMPL in each op's sources); the functions below only
// describe the build.
#include <torch/extension.h>

namespace {

bool compiled_with_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "refcolor compiled kernels (C++ CPU, and CUDA when built with it)";
  m.def("compiled_with_cuda", &compiled_with_cuda, "Whether the CUDA kernels were built");
}
