// Bindings for the fused kernels (filled in by the issue that adds them).
#include "nnk/bind_util.h"

namespace nnk {
namespace bind {

void register_fused(py::module_& m) { (void)m; }

}  // namespace bind
}  // namespace nnk
