#pragma once
// Large fresh CPU outputs: ask Linux for transparent huge pages before the first write. With THP in
// "madvise" mode (common default) each 2 MiB page then costs one fault instead of 512, which on a
// 63 MB gradient saves more time than the kernel itself spends (measured in benchmarks/). Measure
// per buffer: scft_attention's N x M matrix ran 1.7x slower with it and does not ask
// (benchmarks/results/cpu-AMD_EPYC-2c-floors.md).
#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace refcolor {

inline void advise_huge_pages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  if (bytes < 2 * kHuge) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);  // a hint: errors ignored
#else
  (void)data;
  (void)bytes;
#endif
}

}  // namespace refcolor
