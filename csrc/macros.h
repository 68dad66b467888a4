#pragma once
// Lets one inline function serve the CPU build (plain C++) and the CUDA build (nvcc).
#if defined(__CUDACC__) || defined(__HIPCC__)
#define REFCOLOR_HOST_DEVICE __host__ __device__
#else
#define REFCOLOR_HOST_DEVICE
#endif

// REFCOLOR_CPU_CLONES builds an AVX2+FMA (x86-64-v3) copy of a hot CPU function next to the
// baseline one; the loader picks the copy the running CPU supports (GCC function multiversioning),
// so the extension stays portable while vectorised loops use the wide units. Bodies that should be
// compiled for each copy are REFCOLOR_FORCE_INLINE templates called from such a function.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && !defined(__CUDACC__)
#define REFCOLOR_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define REFCOLOR_CPU_CLONES
#endif

#if defined(__GNUC__) || defined(__clang__)
#define REFCOLOR_FORCE_INLINE inline __attribute__((always_inline))
#else
#define REFCOLOR_FORCE_INLINE inline
#endif
