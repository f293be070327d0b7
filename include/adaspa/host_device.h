// ADASPA_HOST_DEVICE: a function both the CUDA kernels and host / CPU code call (a plain inline
// function where the compiler is not nvcc).
#pragma once

#ifdef __CUDACC__
#define ADASPA_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define ADASPA_HOST_DEVICE inline
#endif
