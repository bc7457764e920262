// Polygon rasterisation with the exact pixel rules of the two libraries the planning metrics use.
//
// OmniDrive draws agent and ego boxes with OpenCV's cv2.fillPoly (8-connected outline plus a
// fixed-point scanline fill) and the collision footprint with skimage.draw.polygon (pixel centres
// strictly inside by a crossing-number test). A pixel more or less decides whether a trajectory
// "collides", so both rules are re-implemented here from their published algorithms.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace omnirt::eval {

// A single-channel 8-bit image, row-major (rows = y, cols = x).
struct Raster {
  int rows = 0, cols = 0;
  std::vector<uint8_t> data;
  // Bounding box of every pixel written by the draw functions (empty when min > max), so that
  // callers can scan only the touched window of a 1000x1000 raster.
  int min_row = 1 << 30, max_row = -1, min_col = 1 << 30, max_col = -1;

  Raster() = default;
  Raster(int r, int c, uint8_t value = 0) : rows(r), cols(c), data(size_t(r) * c, value) {}
  uint8_t& at(int row, int col) { return data[size_t(row) * cols + col]; }
  uint8_t at(int row, int col) const { return data[size_t(row) * cols + col]; }
  size_t count_nonzero() const;
  void set(int row, int col, uint8_t value) {
    at(row, col) = value;
    if (row < min_row) min_row = row;
    if (row > max_row) max_row = row;
    if (col < min_col) min_col = col;
    if (col > max_col) max_col = col;
  }
};

// cv::fillPoly(img, {pts}, value) with line_type LINE_8, shift 0, no offset: points are (x=col,
// y=row) integer vertices of one contour. Pixels outside the image are clipped. Follows OpenCV
// >= 4.5.3 (the reference used 4.6), whose edges leaving the image take their slope from the
// clipped segment; checked against cv2.fillPoly on tests/data/eval/fillpoly_cv.json.
void fill_poly_cv(Raster& img, const std::vector<std::array<long long, 2>>& pts, uint8_t value);

// cv::line's 8-connected Bresenham (LineIterator with left_to_right = true), clipped to the image.
void draw_line_cv(Raster& img, std::array<long long, 2> p0, std::array<long long, 2> p1,
                  uint8_t value);

// skimage.draw.polygon(r, c) without a shape: the integer (r, c) points strictly inside (by
// skimage's point_in_polygon) within the bounding box [max(0, min), ceil(max)], in r-major order.
std::vector<std::array<long long, 2>> polygon_skimage(const std::vector<double>& r,
                                                      const std::vector<double>& c);

}  // namespace omnirt::eval
