// The mask_to_idx kernel instantiated once; the binding (mask_to_idx_api.cpp) calls run_mask_to_idx.
#include "adaspa/attention_api.h"
#include "adaspa/mask_to_idx_kernel.h"

namespace adaspa {

cudaError_t run_mask_to_idx(const MaskIdxParams& params, cudaStream_t stream) {
  return launch_mask_to_idx(params, stream);
}

}  // namespace adaspa
