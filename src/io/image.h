// 8-bit RGB images: decoding (JPEG/PNG via stb_image) and PNG writing (stb_image_write).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace omnirt::io {

// Interleaved 8-bit image, row-major, `channels` bytes per pixel (3 = RGB unless said otherwise).
struct Image {
  int width = 0;
  int height = 0;
  int channels = 3;
  std::vector<uint8_t> pixels;  // height * width * channels

  Image() = default;
  Image(int w, int h, int c = 3) : width(w), height(h), channels(c), pixels(size_t(w) * h * c) {}
  uint8_t* row(int y) { return pixels.data() + size_t(y) * width * channels; }
  const uint8_t* row(int y) const { return pixels.data() + size_t(y) * width * channels; }
  uint8_t& at(int x, int y, int c) { return pixels[(size_t(y) * width + x) * channels + c]; }
  uint8_t at(int x, int y, int c) const { return pixels[(size_t(y) * width + x) * channels + c]; }
};

// Decodes a JPEG or PNG file into RGB. Throws omnirt::Error naming the file when it is missing,
// unreadable or not an image stb can decode.
Image load_image_rgb(const std::string& path);

// Writes a PNG (RGB or RGBA). Written to `path + ".tmp"` and renamed, so a reader never sees a
// half-written file. Throws omnirt::Error naming the file on failure.
void write_png(const std::string& path, const Image& img);
// Same for JPEG (quality 1..100).
void write_jpeg(const std::string& path, const Image& img, int quality);

}  // namespace omnirt::io
