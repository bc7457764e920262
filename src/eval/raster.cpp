#include "eval/raster.h"

#include <algorithm>
#include <climits>
#include <cmath>

#include "core/error.h"

namespace omnirt::eval {

size_t Raster::count_nonzero() const {
  return static_cast<size_t>(std::count_if(data.begin(), data.end(), [](uint8_t v) { return v; }));
}

namespace {

constexpr int kXyShift = 16;
constexpr long long kXyOne = 1LL << kXyShift;

// Cohen-Sutherland style clipping as OpenCV's clipLine (the intersection in double, truncated).
bool clip_line(long long width, long long height, long long& x1, long long& y1, long long& x2,
               long long& y2) {
  const long long right = width - 1, bottom = height - 1;
  if (width <= 0 || height <= 0) return false;
  int c1 = (x1 < 0) + (x1 > right) * 2 + (y1 < 0) * 4 + (y1 > bottom) * 8;
  int c2 = (x2 < 0) + (x2 > right) * 2 + (y2 < 0) * 4 + (y2 > bottom) * 8;
  if ((c1 & c2) == 0 && (c1 | c2) != 0) {
    long long a;
    if (c1 & 12) {
      a = c1 < 8 ? 0 : bottom;
      x1 += static_cast<long long>(static_cast<double>(a - y1) * (x2 - x1) / (y2 - y1));
      y1 = a;
      c1 = (x1 < 0) + (x1 > right) * 2;
    }
    if (c2 & 12) {
      a = c2 < 8 ? 0 : bottom;
      x2 += static_cast<long long>(static_cast<double>(a - y2) * (x2 - x1) / (y2 - y1));
      y2 = a;
      c2 = (x2 < 0) + (x2 > right) * 2;
    }
    if ((c1 & c2) == 0 && (c1 | c2) != 0) {
      if (c1) {
        a = c1 == 1 ? 0 : right;
        y1 += static_cast<long long>(static_cast<double>(a - x1) * (y2 - y1) / (x2 - x1));
        x1 = a;
        c1 = 0;
      }
      if (c2) {
        a = c2 == 1 ? 0 : right;
        y2 += static_cast<long long>(static_cast<double>(a - x2) * (y2 - y1) / (x2 - x1));
        x2 = a;
        c2 = 0;
      }
    }
  }
  return (c1 | c2) == 0;
}

struct Edge {
  int y0 = 0, y1 = 0;
  long long x = 0, dx = 0;
};

}  // namespace

void draw_line_cv(Raster& img, std::array<long long, 2> p0, std::array<long long, 2> p1,
                  uint8_t value) {
  long long x1 = p0[0], y1 = p0[1], x2 = p1[0], y2 = p1[1];
  if (x1 < 0 || x1 >= img.cols || x2 < 0 || x2 >= img.cols || y1 < 0 || y1 >= img.rows ||
      y2 < 0 || y2 >= img.rows) {
    if (!clip_line(img.cols, img.rows, x1, y1, x2, y2)) return;
  }
  // Always walk left to right.
  long long dx = x2 - x1, dy = y2 - y1;
  if (dx < 0) {
    dx = -dx;
    dy = -dy;
    std::swap(x1, x2);
    std::swap(y1, y2);
  }
  // Steps in pixel units: the major axis step is taken every iteration, the minor one when the
  // error term is negative (OpenCV LineIterator, connectivity 8).
  long long step_x = 1, step_y = 1;
  if (dy < 0) {
    dy = -dy;
    step_y = -1;
  }
  const bool y_major = dy > dx;
  long long major = y_major ? dy : dx, minor = y_major ? dx : dy;
  long long err = major - (minor + minor);
  const long long plus_delta = major + major, minus_delta = -(minor + minor);
  long long x = x1, y = y1;
  const long long count = major + 1;
  for (long long i = 0; i < count; ++i) {
    img.set(static_cast<int>(y), static_cast<int>(x), value);
    const bool minor_step = err < 0;
    err += minus_delta + (minor_step ? plus_delta : 0);
    if (y_major) {
      y += step_y;
      if (minor_step) x += step_x;
    } else {
      x += step_x;
      if (minor_step) y += step_y;
    }
  }
}

void fill_poly_cv(Raster& img, const std::vector<std::array<long long, 2>>& pts, uint8_t value) {
  const int n = static_cast<int>(pts.size());
  if (n == 0) return;
  // CollectPolyEdges (shift 0, OpenCV >= 4.5.3 as used by the reference): outline every edge with
  // an 8-connected line; keep non-horizontal edges in 16.16 fixed point. For an edge that leaves
  // the image the slope is taken from its clipped segment and the start x is extrapolated from the
  // clipped end back to the original first row, which moves the fill boundary by a pixel at times.
  std::vector<Edge> edges;
  std::array<long long, 2> pt0 = {pts[n - 1][0] << kXyShift, pts[n - 1][1]};
  for (int i = 0; i < n; ++i) {
    const std::array<long long, 2> pt1 = {pts[i][0] << kXyShift, pts[i][1]};
    std::array<long long, 2> t0 = {(pt0[0] + (kXyOne >> 1)) >> kXyShift, pt0[1]};
    std::array<long long, 2> t1 = {(pt1[0] + (kXyOne >> 1)) >> kXyShift, pt1[1]};
    draw_line_cv(img, t0, t1, value);
    long long c0y = pt0[1], c1y = pt1[1];
    if (t0[0] < 0 || t0[0] >= img.cols || t1[0] < 0 || t1[0] >= img.cols || t0[1] < 0 ||
        t0[1] >= img.rows || t1[1] < 0 || t1[1] >= img.rows) {
      clip_line(img.cols, img.rows, t0[0], t0[1], t1[0], t1[1]);  // result ignored, as in OpenCV
      if (t0[1] != t1[1]) {
        c0y = t0[1];
        c1y = t1[1];
      }
    }
    const long long c0x = t0[0] << kXyShift, c1x = t1[0] << kXyShift;
    if (pt0[1] != pt1[1]) {
      Edge e;
      e.dx = (c1x - c0x) / (c1y - c0y);  // truncating, as in C
      if (pt0[1] < pt1[1]) {
        e.y0 = static_cast<int>(pt0[1]);
        e.y1 = static_cast<int>(pt1[1]);
        e.x = c0x + (pt0[1] - c0y) * e.dx;
      } else {
        e.y0 = static_cast<int>(pt1[1]);
        e.y1 = static_cast<int>(pt0[1]);
        e.x = c1x + (pt1[1] - c1y) * e.dx;
      }
      edges.push_back(e);
    }
    pt0 = pt1;
  }
  // FillEdgeCollection.
  const int total = static_cast<int>(edges.size());
  if (total < 2) return;
  int y_max = INT32_MIN, y_min = INT32_MAX;
  long long x_max = -1, x_min = INT64_MAX;  // OpenCV seeds x_max with 0xFFFF... (== -1)
  for (const Edge& e : edges) {
    const long long x1 = e.x + (e.y1 - e.y0) * e.dx;
    y_min = std::min(y_min, e.y0);
    y_max = std::max(y_max, e.y1);
    x_min = std::min({x_min, e.x, x1});
    x_max = std::max({x_max, e.x, x1});
  }
  if (y_max < 0 || y_min >= img.rows || x_max < 0 ||
      x_min >= (static_cast<long long>(img.cols) << kXyShift))
    return;
  std::sort(edges.begin(), edges.end(), [](const Edge& a, const Edge& b) {
    if (a.y0 != b.y0) return a.y0 < b.y0;
    if (a.x != b.x) return a.x < b.x;
    return a.dx < b.dx;
  });
  y_max = std::min(y_max, img.rows);

  // The active edge list, kept in the order OpenCV keeps it: new edges are inserted before the
  // first active edge whose x is not smaller, pairs of consecutive entries bound a span, and the
  // list is bubble-sorted by x after each scanline.
  std::vector<int> active;
  int next = 0;
  for (int y = edges[0].y0; y < y_max; ++y) {
    // Drop edges that end at this scanline.
    active.erase(std::remove_if(active.begin(), active.end(),
                                [&](int k) { return edges[k].y1 == y; }),
                 active.end());
    // Merge edges that start here, walking the list exactly as OpenCV's while loop does.
    std::vector<int> merged;
    size_t a = 0;
    while (a < active.size() || (next < total && edges[next].y0 == y)) {
      const bool take_active =
          a < active.size() &&
          (next >= total || edges[next].y0 > y || edges[active[a]].x < edges[next].x);
      if (take_active)
        merged.push_back(active[a++]);
      else if (next < total)
        merged.push_back(next++);
      else
        break;
    }
    active = merged;
    // Spans between consecutive pairs.
    for (size_t k = 0; k + 1 < active.size(); k += 2) {
      Edge& e0 = edges[active[k]];
      Edge& e1 = edges[active[k + 1]];
      if (y >= 0) {
        long long x1, x2;
        if (e0.x > e1.x) {
          x1 = (e1.x + kXyOne - 1) >> kXyShift;
          x2 = e0.x >> kXyShift;
        } else {
          x1 = (e0.x + kXyOne - 1) >> kXyShift;
          x2 = e1.x >> kXyShift;
        }
        if (x1 < img.cols && x2 >= 0) {
          x1 = std::max(x1, 0LL);
          x2 = std::min(x2, static_cast<long long>(img.cols) - 1);
          for (long long x = x1; x <= x2; ++x) img.set(y, static_cast<int>(x), value);
        }
      }
      e0.x += e0.dx;
      e1.x += e1.dx;
    }
    // Bubble sort by x (stable for equal x, like OpenCV's strict '>' swap).
    for (size_t pass = 0; pass < active.size(); ++pass) {
      bool swapped = false;
      for (size_t k = 0; k + 1 < active.size(); ++k) {
        if (edges[active[k]].x > edges[active[k + 1]].x) {
          std::swap(active[k], active[k + 1]);
          swapped = true;
        }
      }
      if (!swapped) break;
    }
  }
}

std::vector<std::array<long long, 2>> polygon_skimage(const std::vector<double>& r,
                                                      const std::vector<double>& c) {
  OMNIRT_CHECK(r.size() == c.size() && !r.empty(), "polygon: r and c must have the same length");
  const auto [rmin, rmax] = std::minmax_element(r.begin(), r.end());
  const auto [cmin, cmax] = std::minmax_element(c.begin(), c.end());
  const long long minr = static_cast<long long>(std::max(0.0, *rmin));
  const long long maxr = static_cast<long long>(std::ceil(*rmax));
  const long long minc = static_cast<long long>(std::max(0.0, *cmin));
  const long long maxc = static_cast<long long>(std::ceil(*cmax));
  // point_in_polygon(xp = c, yp = r, x = c_i, y = r_i): crossing number.
  auto inside = [&](double x, double y) {
    bool in = false;
    const size_t n = r.size();
    size_t j = n - 1;
    for (size_t i = 0; i < n; ++i) {
      const double yi = r[i], yj = r[j], xi = c[i], xj = c[j];
      if (((yi <= y && y < yj) || (yj <= y && y < yi)) && (x < (xj - xi) * (y - yi) / (yj - yi) + xi))
        in = !in;
      j = i;
    }
    return in;
  };
  std::vector<std::array<long long, 2>> out;
  for (long long ri = minr; ri <= maxr; ++ri)
    for (long long ci = minc; ci <= maxc; ++ci)
      if (inside(static_cast<double>(ci), static_cast<double>(ri))) out.push_back({ri, ci});
  return out;
}

}  // namespace omnirt::eval
