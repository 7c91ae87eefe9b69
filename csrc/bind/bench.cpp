// Bindings for the bench kernels (filled in by the issue that adds them).
#include "nnk/bind_util.h"

namespace nnk {
namespace bind {

void register_bench(py::module_& m) { (void)m; }

}  // namespace bind
}  // namespace nnk
