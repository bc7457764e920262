// Tensor: a typed, shaped view onto bytes on one device.
//
// A Tensor holds a shared pointer to its Storage (which may own its bytes, or merely point at
// bytes someone else owns: an mmapped file, an arena block) plus shape, strides (in elements)
// and an element offset. Copies of a Tensor share storage; views (reshape, slice, permute) never
// copy. Packed sub-byte dtypes (I4, FP4E2M1) support contiguous tensors only.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"

namespace omnirt {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "[2, 3, 4]"
int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& s);

// A block of bytes on a device; frees itself with `deleter` when the last Tensor lets go.
struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device = Device::CPU;
  std::function<void(void*)> deleter;  // empty: not owned
  Storage() = default;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage();
};

class Tensor {
 public:
  Tensor() = default;

  // Fresh, owning, uninitialised memory.
  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::CPU);
  static Tensor zeros(const Shape& shape, DType dtype, Device device = Device::CPU);
  // Non-owning view of bytes that outlive the tensor. `keep_alive` (optional) is held while
  // the tensor lives, e.g. the mmap of a weight file.
  static Tensor from_blob(void* data, const Shape& shape, DType dtype, Device device,
                          std::shared_ptr<void> keep_alive = nullptr);
  // Host float32 tensor holding a copy of `values`.
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const;  // negative i counts from the back
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return dtype_nbytes(dtype_, numel()); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device : Device::CPU; }
  bool is_cuda() const { return device() == Device::CUDA; }
  bool is_contiguous() const;
  int64_t offset() const { return offset_; }

  void* raw();  // pointer to element 0 (the view's first element)
  const void* raw() const;
  template <typename T>
  T* data() {
    return static_cast<T*>(raw());
  }
  template <typename T>
  const T* data() const {
    return static_cast<const T*>(raw());
  }

  // Views (no copy).
  Tensor reshape(const Shape& shape) const;  // requires contiguous; one dim may be -1
  Tensor slice(int dim, int64_t start, int64_t end) const;
  Tensor select(int dim, int64_t index) const;  // drops `dim`
  Tensor permute(const std::vector<int>& dims) const;
  Tensor unsqueeze(int dim) const;

  // Copies.
  Tensor to(Device device) const;  // contiguous copy on `device` (same dtype)
  Tensor contiguous() const;       // same device; returns *this if already contiguous
  Tensor clone() const;
  Tensor to_dtype(DType dtype) const;  // CPU only: float conversions through float32
  void copy_from(const Tensor& src);   // same shape & dtype; any devices; src may be strided (CPU)

  // Host float32 copy of any float tensor, for tests and reference code.
  std::vector<float> to_float_vector() const;

  // "F32[2, 3] cuda"
  std::string describe() const;

 private:
  std::shared_ptr<Storage> storage_;
  Shape shape_;
  Shape strides_;
  int64_t offset_ = 0;  // in elements
  DType dtype_ = DType::F32;
};

// Throws a clear error if `t` does not have `shape`/`dtype`. `what` names the tensor.
void expect_shape(const Tensor& t, const Shape& shape, const std::string& what);
void expect_dtype(const Tensor& t, DType dtype, const std::string& what);
void expect_same_device(const Tensor& a, const Tensor& b, const std::string& what);

// Bump allocator over one device block: buffers are planned when a model loads, then handed
// out without further cudaMalloc on the hot path. reset() frees all at once.
class Arena {
 public:
  Arena(Device device, size_t capacity_bytes);
  Tensor alloc(const Shape& shape, DType dtype);
  void reset() { used_ = 0; }
  size_t used() const { return used_; }
  size_t peak() const { return peak_; }
  size_t capacity() const { return capacity_; }
  Device device() const { return device_; }

 private:
  Device device_;
  size_t capacity_;
  size_t used_ = 0;
  size_t peak_ = 0;
  std::shared_ptr<Storage> block_;
};

}  // namespace omnirt
