// Argument checking shared by the bindings (csrc/bind/*.cpp). Every check runs
// with the GIL held, before a kernel releases it, and raises TypeError or
// ValueError naming the argument. Arrays are taken as plain py::array: never
// converted (no forced casting), so an array a kernel writes is the caller's own.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "nnk/common.h"

namespace nnk {
namespace bind {

namespace py = pybind11;

enum class DType { f32, f64 };

inline std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) {
        if (i) s += ", ";
        s += std::to_string(a.shape(i));
    }
    if (a.ndim() == 1) s += ",";
    return s + ")";
}

inline std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

// Equal dtypes are not always the same object (an unpickled array's '<f4' is
// a fresh descriptor), so compare type number and byte order, never identity.
inline bool same_native_type(const py::dtype& d, const py::dtype& want) {
    if (d.is(want)) return true;
    const unsigned short one = 1;
    const char native = *reinterpret_cast<const char*>(&one) == 1 ? '<' : '>';
    const char bo = d.byteorder();
    return d.num() == want.num() && (bo == '=' || bo == '|' || bo == native);
}

inline DType float_dtype(const py::array& a, const char* name) {
    if (same_native_type(a.dtype(), py::dtype::of<float>())) return DType::f32;
    if (same_native_type(a.dtype(), py::dtype::of<double>())) return DType::f64;
    throw py::type_error(std::string(name) + ": expected a float32 or float64 array, got dtype " +
                         dtype_str(a));
}

inline void same_dtype(const py::array& a, const char* an, const py::array& b, const char* bn) {
    if (!same_native_type(a.dtype(), b.dtype()))
        throw py::type_error(std::string("dtype mismatch: ") + an + " is " + dtype_str(a) + " but " +
                             bn + " is " + dtype_str(b));
}

inline void require_ndim(const py::array& a, const char* name, py::ssize_t ndim) {
    if (a.ndim() != ndim)
        throw py::value_error(std::string(name) + ": expected a " + std::to_string(ndim) +
                              "-D array, got shape " + shape_str(a));
}

inline void require_writeable(const py::array& a, const char* name) {
    if (!a.writeable())
        throw py::value_error(std::string(name) + ": array is read-only but is written in place");
}

inline void require_c_contiguous(const py::array& a, const char* name) {
    if (!(a.flags() & py::array::c_style))
        throw py::value_error(std::string(name) + ": expected a C-contiguous array");
}

// Stride of axis `axis` in elements (any sign); bytes must divide evenly.
inline index_t elem_stride(const py::array& a, const char* name, py::ssize_t axis) {
    const py::ssize_t s = a.strides(axis), isz = a.itemsize();
    if (s % isz != 0)
        throw py::value_error(std::string(name) + ": strides must be a multiple of the item size");
    return static_cast<index_t>(s / isz);
}

// Byte range [lo, hi) touched by an array (for overlap checks).
inline std::pair<const char*, const char*> byte_span(const py::array& a) {
    const char* base = static_cast<const char*>(a.data());
    const char* lo = base;
    const char* hi = base + a.itemsize();
    if (a.size() == 0) return {base, base};
    for (py::ssize_t i = 0; i < a.ndim(); ++i) {
        const py::ssize_t ext = (a.shape(i) - 1) * a.strides(i);
        if (ext < 0) lo += ext; else hi += ext;
    }
    return {lo, hi};
}

inline void require_no_overlap(const py::array& out, const char* on, const py::array& in, const char* in_name) {
    auto a = byte_span(out), b = byte_span(in);
    if (a.first < b.second && b.first < a.second)
        throw py::value_error(std::string(on) + " overlaps the memory of input " + in_name);
}

}  // namespace bind
}  // namespace nnk
