// Which tile a CTA computes: one CTA per (query tile of kBlockM rows, head, batch entry), in
// blockIdx (x, y, z) order, so the query tiles of one head run as neighbours and read the same
// K / V while it is in L2. Shared by every kernel and by the host-side limit check.
#pragma once

#include <cuda_runtime_api.h>

#include "adaspa/params.h"

namespace adaspa {

// Heads and batch entries of one launch: the gridDim.y / gridDim.z limit.
constexpr int kMaxGridYZ = 65535;

template <int kBlockM>
inline dim3 attention_grid(const AttnParams& p) {
  return dim3((p.nq + kBlockM - 1) / kBlockM, p.heads, p.batch);
}

struct CtaTile {
  int m_block;  // query tile (kBlockM rows)
  int h, b;
};

#ifdef __CUDACC__
__device__ __forceinline__ CtaTile cta_tile() {
  return {static_cast<int>(blockIdx.x), static_cast<int>(blockIdx.y), static_cast<int>(blockIdx.z)};
}
#endif

}  // namespace adaspa
