#include "core/tensor.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <sstream>

#include "core/error.h"

namespace omnirt {


Storage::~Storage() {
  if (deleter) deleter(data);
}

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (int i = static_cast<int>(s.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

static std::shared_ptr<Storage> make_owned(size_t bytes, Device device) {
  auto st = std::make_shared<Storage>();
  st->data = device_alloc(device, bytes);
  st->bytes = bytes;
  st->device = device;
  if (device == Device::CPU) {
    st->deleter = [](void* p) { device_free(Device::CPU, p); };
  } else {
    st->deleter = [bytes](void* p) { device_free(Device::CUDA, p, bytes); };
  }
  return st;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) OMNIRT_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
  if (dtype_is_packed(dtype) && !shape.empty())
    OMNIRT_CHECK(shape.back() % 2 == 0, "packed dtype ", dtype_name(dtype),
                 " needs an even innermost dimension, got shape ", shape_str(shape));
  Tensor t;
  t.storage_ = make_owned(dtype_nbytes(dtype, shape_numel(shape)), device);
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  device_memset(device, t.raw(), 0, t.nbytes());
  return t;
}

Tensor Tensor::from_blob(void* data, const Shape& shape, DType dtype, Device device,
                         std::shared_ptr<void> keep_alive) {
  Tensor t;
  t.storage_ = std::make_shared<Storage>();
  t.storage_->data = data;
  t.storage_->bytes = dtype_nbytes(dtype, shape_numel(shape));
  t.storage_->device = device;
  if (keep_alive) t.storage_->deleter = [keep_alive](void*) mutable { keep_alive.reset(); };
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  return t;
}

Tensor Tensor::from_vector(const std::vector<float>& values, const Shape& shape) {
  OMNIRT_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_vector: ",
               values.size(), " values do not fill shape ", shape_str(shape));
  Tensor t = empty(shape, DType::F32);
  std::memcpy(t.raw(), values.data(), values.size() * sizeof(float));
  return t;
}

int64_t Tensor::dim(int i) const {
  if (i < 0) i += ndim();
  OMNIRT_CHECK(i >= 0 && i < ndim(), "dimension ", i, " out of range for ", describe());
  return shape_[i];
}

bool Tensor::is_contiguous() const { return strides_ == contiguous_strides(shape_) || numel() <= 1; }

void* Tensor::raw() {
  OMNIRT_CHECK(defined(), "access to an undefined tensor");
  return static_cast<char*>(storage_->data) + dtype_nbytes(dtype_, offset_);
}
const void* Tensor::raw() const { return const_cast<Tensor*>(this)->raw(); }

Tensor Tensor::reshape(const Shape& shape) const {
  OMNIRT_CHECK(is_contiguous(), "reshape of a non-contiguous tensor ", describe());
  Shape s = shape;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      OMNIRT_CHECK(infer < 0, "reshape: more than one -1 in ", shape_str(shape));
      infer = static_cast<int>(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    OMNIRT_CHECK(known > 0 && numel() % known == 0, "reshape ", describe(), " to ", shape_str(shape));
    s[infer] = numel() / known;
  }
  OMNIRT_CHECK(shape_numel(s) == numel(), "reshape ", describe(), " to ", shape_str(shape),
               ": element counts differ");
  Tensor t = *this;
  t.shape_ = s;
  t.strides_ = contiguous_strides(s);
  return t;
}

Tensor Tensor::slice(int d, int64_t start, int64_t end) const {
  if (d < 0) d += ndim();
  OMNIRT_CHECK(d >= 0 && d < ndim(), "slice: dimension out of range for ", describe());
  OMNIRT_CHECK(0 <= start && start <= end && end <= shape_[d], "slice [", start, ", ", end,
               ") out of range for dimension ", d, " of ", describe());
  OMNIRT_CHECK(!dtype_is_packed(dtype_) || (d != ndim() - 1 && start == 0) || d == 0 ||
                   is_contiguous(),
               "slice of a packed tensor must keep it contiguous");
  Tensor t = *this;
  t.offset_ += start * strides_[d];
  t.shape_[d] = end - start;
  return t;
}

Tensor Tensor::select(int d, int64_t index) const {
  if (d < 0) d += ndim();
  Tensor t = slice(d, index, index + 1);
  t.shape_.erase(t.shape_.begin() + d);
  t.strides_.erase(t.strides_.begin() + d);
  return t;
}

Tensor Tensor::permute(const std::vector<int>& dims) const {
  OMNIRT_CHECK(static_cast<int>(dims.size()) == ndim(), "permute: ", dims.size(),
               " dims given for ", describe());
  OMNIRT_CHECK(!dtype_is_packed(dtype_), "permute of packed dtype ", dtype_name(dtype_));
  std::vector<int> seen(ndim(), 0);
  Tensor t = *this;
  for (int i = 0; i < ndim(); ++i) {
    int src = dims[i] < 0 ? dims[i] + ndim() : dims[i];
    OMNIRT_CHECK(src >= 0 && src < ndim() && !seen[src], "permute: invalid dims for ", describe());
    seen[src] = 1;
    t.shape_[i] = shape_[src];
    t.strides_[i] = strides_[src];
  }
  return t;
}

Tensor Tensor::unsqueeze(int d) const {
  if (d < 0) d += ndim() + 1;
  OMNIRT_CHECK(d >= 0 && d <= ndim(), "unsqueeze: dimension out of range for ", describe());
  Tensor t = *this;
  int64_t stride = d < ndim() ? strides_[d] * shape_[d] : 1;
  t.shape_.insert(t.shape_.begin() + d, 1);
  t.strides_.insert(t.strides_.begin() + d, stride);
  return t;
}

// Strided host copy: walks the index space of `src`, writing contiguously into dst.
static void strided_to_contiguous_host(const Tensor& src, void* dst) {
  const size_t es = dtype_bits(src.dtype()) / 8;
  const int nd = src.ndim();
  const int64_t n = src.numel();
  std::vector<int64_t> idx(nd, 0);
  const char* base = static_cast<const char*>(src.raw());
  char* out = static_cast<char*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    int64_t off = 0;
    for (int k = 0; k < nd; ++k) off += idx[k] * src.strides()[k];
    std::memcpy(out + i * es, base + off * static_cast<int64_t>(es), es);
    for (int k = nd - 1; k >= 0; --k) {
      if (++idx[k] < src.shape()[k]) break;
      idx[k] = 0;
    }
  }
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  OMNIRT_CHECK(device() == Device::CPU,
               "contiguous() of a strided CUDA tensor: use ops::permute on the GPU (", describe(), ")");
  Tensor t = empty(shape_, dtype_, Device::CPU);
  strided_to_contiguous_host(*this, t.raw());
  return t;
}

Tensor Tensor::to(Device d) const {
  Tensor src = contiguous();
  Tensor t = empty(shape_, dtype_, d);
  device_copy(t.raw(), d, src.raw(), src.device(), src.nbytes());
  return t;
}

Tensor Tensor::clone() const { return to(device()); }

void Tensor::copy_from(const Tensor& src) {
  OMNIRT_CHECK(src.shape() == shape_ && src.dtype() == dtype_, "copy_from: ", src.describe(),
               " into ", describe());
  OMNIRT_CHECK(is_contiguous(), "copy_from into a non-contiguous tensor ", describe());
  Tensor s = src.contiguous();
  device_copy(raw(), device(), s.raw(), s.device(), nbytes());
}

std::vector<float> Tensor::to_float_vector() const {
  Tensor h = device() == Device::CPU ? contiguous() : to(Device::CPU);
  const int64_t n = h.numel();
  std::vector<float> out(n);
  switch (dtype_) {
    case DType::F32:
      std::memcpy(out.data(), h.raw(), n * 4);
      break;
    case DType::F64:
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(h.data<double>()[i]);
      break;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) out[i] = half_to_float(h.data<uint16_t>()[i]);
      break;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_float(h.data<uint16_t>()[i]);
      break;
    case DType::F8E4M3:
      for (int64_t i = 0; i < n; ++i) out[i] = fp8e4m3_to_float(h.data<uint8_t>()[i]);
      break;
    case DType::I32:
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(h.data<int32_t>()[i]);
      break;
    case DType::I64:
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(h.data<int64_t>()[i]);
      break;
    case DType::I8:
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(h.data<int8_t>()[i]);
      break;
    case DType::U8:
    case DType::Bool:
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(h.data<uint8_t>()[i]);
      break;
    default:
      OMNIRT_FAIL("to_float_vector: unsupported dtype ", dtype_name(dtype_));
  }
  return out;
}

Tensor Tensor::to_dtype(DType target) const {
  OMNIRT_CHECK(device() == Device::CPU, "to_dtype is a host conversion; got ", describe());
  if (target == dtype_) return clone();
  std::vector<float> v = to_float_vector();
  Tensor t = empty(shape_, target);
  const int64_t n = numel();
  switch (target) {
    case DType::F32:
      std::memcpy(t.raw(), v.data(), n * 4);
      break;
    case DType::F64:
      for (int64_t i = 0; i < n; ++i) t.data<double>()[i] = v[i];
      break;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) t.data<uint16_t>()[i] = float_to_half(v[i]);
      break;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) t.data<uint16_t>()[i] = float_to_bf16(v[i]);
      break;
    case DType::F8E4M3:
      for (int64_t i = 0; i < n; ++i) t.data<uint8_t>()[i] = float_to_fp8e4m3(v[i]);
      break;
    case DType::I32:
      for (int64_t i = 0; i < n; ++i) t.data<int32_t>()[i] = static_cast<int32_t>(v[i]);
      break;
    case DType::I64:
      for (int64_t i = 0; i < n; ++i) t.data<int64_t>()[i] = static_cast<int64_t>(v[i]);
      break;
    case DType::I8:
      for (int64_t i = 0; i < n; ++i) t.data<int8_t>()[i] = static_cast<int8_t>(v[i]);
      break;
    case DType::U8:
    case DType::Bool:
      for (int64_t i = 0; i < n; ++i) t.data<uint8_t>()[i] = static_cast<uint8_t>(v[i]);
      break;
    default:
      OMNIRT_FAIL("to_dtype: unsupported target ", dtype_name(target));
  }
  return t;
}

std::string Tensor::describe() const {
  std::ostringstream os;
  os << dtype_name(dtype_) << shape_str(shape_) << " " << device_name(device());
  return os.str();
}

void expect_shape(const Tensor& t, const Shape& shape, const std::string& what) {
  OMNIRT_CHECK(t.defined(), what, ": tensor is missing");
  OMNIRT_CHECK(t.shape() == shape, what, ": expected shape ", shape_str(shape), ", got ",
               shape_str(t.shape()));
}
void expect_dtype(const Tensor& t, DType dtype, const std::string& what) {
  OMNIRT_CHECK(t.dtype() == dtype, what, ": expected dtype ", dtype_name(dtype), ", got ",
               dtype_name(t.dtype()));
}
void expect_same_device(const Tensor& a, const Tensor& b, const std::string& what) {
  OMNIRT_CHECK(a.device() == b.device(), what, ": tensors on different devices (",
               device_name(a.device()), " vs ", device_name(b.device()), ")");
}

Arena::Arena(Device device, size_t capacity_bytes) : device_(device), capacity_(capacity_bytes) {
  block_ = make_owned(capacity_bytes, device);
}

Tensor Arena::alloc(const Shape& shape, DType dtype) {
  constexpr size_t kAlign = 256;  // cuBLASLt and vector loads like 256-byte alignment
  const size_t bytes = dtype_nbytes(dtype, shape_numel(shape));
  const size_t start = (used_ + kAlign - 1) / kAlign * kAlign;
  OMNIRT_CHECK(start + bytes <= capacity_, "arena on ", device_name(device_), " exhausted: need ",
               bytes, " bytes for ", shape_str(shape), " with ", capacity_ - std::min(capacity_, start),
               " of ", capacity_, " left");
  used_ = start + bytes;
  peak_ = std::max(peak_, used_);
  auto keep = block_;
  return Tensor::from_blob(static_cast<char*>(block_->data) + start, shape, dtype, device_,
                           std::shared_ptr<void>(keep, keep.get()));
}

}  // namespace omnirt
