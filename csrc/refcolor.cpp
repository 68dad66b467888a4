// Python module `refcolor._C`. Importing it registers every compiled op with the torch dispatcher
// (TORCH_LIBRARY_FRAGMENT / TORCH_LIBRARY_IMPL in each op's sources); the functions below only
// describe the build.
#include <torch/extension.h>
#include <torch/headeronly/version.h>

#include <string>

namespace {

bool compiled_with_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

// The torch release whose headers (and C++ ABI) this module was compiled against: refcolor/_extension.py
// refuses to run it under another.
std::string torch_version() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "refcolor compiled kernels (C++ CPU, and CUDA when built with it)";
  m.def("compiled_with_cuda", &compiled_with_cuda, "Whether the CUDA kernels were built");
  m.def("torch_version", &torch_version, "The torch release this module was compiled against");
}
