// The select_blocks kernel instantiated once; the binding (select_api.cpp) calls run_select.
#include "adaspa/attention_api.h"
#include "adaspa/select_kernel.h"

namespace adaspa {

cudaError_t run_select(const SelectParams& params, cudaStream_t stream) { return launch_select(params, stream); }

}  // namespace adaspa
