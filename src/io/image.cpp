#include "io/image.h"

#include <cstdio>
#include <filesystem>
#include <system_error>

#include "core/error.h"

// The one translation unit that holds the stb implementations.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_FAILURE_USERMSG
#include "stb_image.h"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include "stb_image_write.h"
#pragma GCC diagnostic pop

namespace omnirt::io {

Image load_image_rgb(const std::string& path) {
  std::error_code ec;
  OMNIRT_CHECK(std::filesystem::is_regular_file(path, ec), "image ", path,
               ": file not found (or not a regular file)");
  int w = 0, h = 0, c = 0;
  unsigned char* data = stbi_load(path.c_str(), &w, &h, &c, 3);
  if (data == nullptr) {
    const char* why = stbi_failure_reason();
    OMNIRT_FAIL("image ", path, ": cannot decode as JPEG/PNG (", why ? why : "unknown reason", ")");
  }
  Image img(w, h, 3);
  std::copy(data, data + size_t(w) * h * 3, img.pixels.begin());
  stbi_image_free(data);
  return img;
}

namespace {

void check_writable_image(const std::string& path, const Image& img) {
  OMNIRT_CHECK(img.width > 0 && img.height > 0 && (img.channels == 3 || img.channels == 4),
               "image ", path, ": cannot write a ", img.width, "x", img.height, "x", img.channels,
               " image (expected RGB or RGBA, non-empty)");
  OMNIRT_CHECK(img.pixels.size() == size_t(img.width) * img.height * img.channels, "image ", path,
               ": pixel buffer has ", img.pixels.size(), " bytes, expected ",
               size_t(img.width) * img.height * img.channels);
}

void rename_into_place(const std::string& tmp, const std::string& path) {
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    OMNIRT_FAIL("image ", path, ": cannot rename the temporary file into place");
  }
}

}  // namespace

void write_png(const std::string& path, const Image& img) {
  check_writable_image(path, img);
  const std::string tmp = path + ".tmp";
  const int ok = stbi_write_png(tmp.c_str(), img.width, img.height, img.channels,
                                img.pixels.data(), img.width * img.channels);
  OMNIRT_CHECK(ok != 0, "image ", path, ": cannot write PNG (", tmp, ")");
  rename_into_place(tmp, path);
}

void write_jpeg(const std::string& path, const Image& img, int quality) {
  check_writable_image(path, img);
  OMNIRT_CHECK(quality >= 1 && quality <= 100, "image ", path, ": JPEG quality ", quality,
               " outside 1..100");
  const std::string tmp = path + ".tmp";
  const int ok = stbi_write_jpg(tmp.c_str(), img.width, img.height, img.channels,
                                img.pixels.data(), quality);
  OMNIRT_CHECK(ok != 0, "image ", path, ": cannot write JPEG (", tmp, ")");
  rename_into_place(tmp, path);
}

}  // namespace omnirt::io
