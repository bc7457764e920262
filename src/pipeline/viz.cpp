#include "pipeline/viz.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "core/error.h"
#include "pipeline/preprocess.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include "stb_easy_font.h"
#pragma GCC diagnostic pop

namespace omnirt::pipeline::viz {

namespace {

inline void blend(io::Image& img, int x, int y, Rgb c, float a) {
  if (x < 0 || y < 0 || x >= img.width || y >= img.height) return;
  uint8_t* p = &img.pixels[(size_t(y) * img.width + x) * img.channels];
  for (int k = 0; k < 3; ++k) p[k] = uint8_t(std::lround(p[k] * (1 - a) + c[k] * a));
}

}  // namespace

void fill_rect(io::Image& img, int x0, int y0, int x1, int y1, Rgb c, float alpha) {
  for (int y = std::max(0, y0); y < std::min(img.height, y1); ++y)
    for (int x = std::max(0, x0); x < std::min(img.width, x1); ++x) blend(img, x, y, c, alpha);
}

void draw_line(io::Image& img, double x0, double y0, double x1, double y1, Rgb c, int thickness,
               float alpha) {
  if (!std::isfinite(x0) || !std::isfinite(y0) || !std::isfinite(x1) || !std::isfinite(y1)) return;
  // Clip the parameter range to a generous box so off-screen segments cost nothing.
  const double lim = 4.0 * std::max(img.width, img.height);
  if (std::max({std::abs(x0), std::abs(y0), std::abs(x1), std::abs(y1)}) > 1e6) return;
  const double dx = x1 - x0, dy = y1 - y0;
  const double len = std::max(std::abs(dx), std::abs(dy));
  const int steps = int(std::min(len, lim)) + 1;
  const int r0 = -(thickness - 1) / 2, r1 = thickness / 2;
  int last_x = INT32_MIN, last_y = INT32_MIN;
  for (int i = 0; i <= steps; ++i) {
    const double t = steps > 0 ? double(i) / steps : 0;
    const int x = int(std::lround(x0 + t * dx)), y = int(std::lround(y0 + t * dy));
    if (x == last_x && y == last_y) continue;
    last_x = x;
    last_y = y;
    for (int oy = r0; oy <= r1; ++oy)
      for (int ox = r0; ox <= r1; ++ox) blend(img, x + ox, y + oy, c, alpha);
  }
}

void fill_polygon(io::Image& img, const std::vector<std::array<double, 2>>& pts, Rgb c,
                  float alpha) {
  if (pts.size() < 3) return;
  double ymin = pts[0][1], ymax = pts[0][1];
  for (const auto& p : pts) {
    if (!std::isfinite(p[0]) || !std::isfinite(p[1])) return;
    ymin = std::min(ymin, p[1]);
    ymax = std::max(ymax, p[1]);
  }
  const int y0 = std::max(0, int(std::ceil(ymin - 0.5))), y1 = std::min(img.height - 1, int(std::floor(ymax - 0.5)));
  std::vector<double> xs;
  for (int y = y0; y <= y1; ++y) {
    const double yc = y + 0.5;  // even-odd rule at pixel centres
    xs.clear();
    for (size_t i = 0; i < pts.size(); ++i) {
      const auto& a = pts[i];
      const auto& b = pts[(i + 1) % pts.size()];
      if ((a[1] <= yc && b[1] > yc) || (b[1] <= yc && a[1] > yc))
        xs.push_back(a[0] + (yc - a[1]) / (b[1] - a[1]) * (b[0] - a[0]));
    }
    std::sort(xs.begin(), xs.end());
    for (size_t i = 0; i + 1 < xs.size(); i += 2) {
      const int xa = std::max(0, int(std::ceil(xs[i] - 0.5)));
      const int xb = std::min(img.width - 1, int(std::floor(xs[i + 1] - 0.5)));
      for (int x = xa; x <= xb; ++x) blend(img, x, y, c, alpha);
    }
  }
}

int text_width(const std::string& text, int scale) {
  return stb_easy_font_width(const_cast<char*>(text.c_str())) * scale;
}

void draw_text(io::Image& img, int x, int y, const std::string& text, Rgb c, int scale) {
  static thread_local std::vector<char> buf(200000);
  struct Vtx {
    float x, y, z;
    unsigned char rgba[4];
  };
  const int quads = stb_easy_font_print(0, 0, const_cast<char*>(text.c_str()), nullptr, buf.data(),
                                        int(buf.size()));
  const Vtx* v = reinterpret_cast<const Vtx*>(buf.data());
  for (int q = 0; q < quads; ++q) {
    const Vtx* a = v + q * 4;
    const int qx0 = x + int(a[0].x) * scale, qy0 = y + int(a[0].y) * scale;
    const int qx1 = x + int(a[2].x) * scale, qy1 = y + int(a[2].y) * scale;
    fill_rect(img, qx0, qy0, qx1, qy1, c, 1.f);
  }
}

Rgb class_colour(int label) {
  static const Rgb table[10] = {{255, 158, 0},  {255, 99, 71},  {233, 150, 70}, {255, 69, 0},
                                {255, 140, 0},  {112, 128, 144}, {255, 61, 99}, {220, 20, 60},
                                {0, 0, 230},    {47, 79, 79}};
  return label >= 0 && label < 10 ? table[label] : Rgb{200, 200, 200};
}

namespace {

// Boxes with score >= threshold; with random weights (scores meaningless) the 10 best instead,
// so the pictures still show what the pipeline produced.
std::vector<int> boxes_to_draw(const FrameOutput& out, const VizOptions& opt) {
  std::vector<int> idx;
  for (size_t i = 0; i < out.boxes.size(); ++i)
    if (opt.random_weights || out.boxes[i].score >= opt.box_threshold) idx.push_back(int(i));
  std::sort(idx.begin(), idx.end(), [&](int a, int b) { return out.boxes[a].score > out.boxes[b].score; });
  const int keep = opt.random_weights ? std::min(opt.max_boxes, 10) : opt.max_boxes;
  if (int(idx.size()) > keep) idx.resize(keep);
  return idx;
}

std::vector<int> lanes_to_draw(const FrameOutput& out, const VizOptions& opt) {
  std::vector<int> idx(out.lanes.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](int a, int b) { return out.lanes[a].score > out.lanes[b].score; });
  if (int(idx.size()) > opt.max_lanes) idx.resize(opt.max_lanes);
  return idx;
}

// Footprint corners (ego x, y) of a box: front-left, front-right, rear-right, rear-left.
std::array<std::array<double, 2>, 4> footprint(const Box3D& b) {
  const double c = std::cos(b.yaw), s = std::sin(b.yaw);
  const double hl = b.size_wlh[1] / 2, hw = b.size_wlh[0] / 2;
  std::array<std::array<double, 2>, 4> out;
  const double dl[4] = {hl, hl, -hl, -hl}, dw[4] = {hw, -hw, -hw, hw};
  for (int k = 0; k < 4; ++k)
    out[k] = {b.center[0] + c * dl[k] - s * dw[k], b.center[1] + s * dl[k] + c * dw[k]};
  return out;
}

void random_banner(io::Image& img) {
  const std::string t = "RANDOM WEIGHTS: boxes and text are meaningless";
  fill_rect(img, 0, img.height - 22, img.width, img.height, {120, 0, 0}, 0.85f);
  draw_text(img, 6, img.height - 18, t, {255, 255, 255}, 2);
}

}  // namespace

io::Image render_bev(const FrameOutput& out, const std::string& title, const VizOptions& opt,
                     int size, double range_m) {
  io::Image img(size, size);
  std::fill(img.pixels.begin(), img.pixels.end(), uint8_t(28));
  const double ppm = size / (2 * range_m), cx = size / 2.0, cy = size / 2.0;
  auto to_px = [&](double x, double y) { return std::array<double, 2>{cx - y * ppm, cy - x * ppm}; };
  // grid every 10 m, labelled
  for (int m = -int(range_m) / 10 * 10; m <= range_m; m += 10) {
    const Rgb g = m == 0 ? Rgb{90, 90, 90} : Rgb{55, 55, 55};
    const auto a = to_px(m, -range_m), b = to_px(m, range_m);
    draw_line(img, a[0], a[1], b[0], b[1], g);
    const auto c = to_px(-range_m, m), d = to_px(range_m, m);
    draw_line(img, c[0], c[1], d[0], d[1], g);
    if (m != 0) draw_text(img, int(cx) + 3, int(a[1]) + 2, std::to_string(m) + " m", {110, 110, 110}, 1);
  }
  // lanes
  for (int li : lanes_to_draw(out, opt)) {
    const auto& l = out.lanes[li];
    const uint8_t v = uint8_t(80 + 175 * std::clamp(l.score, 0.f, 1.f));
    for (size_t k = 0; k + 1 < l.points.size(); ++k) {
      const auto a = to_px(l.points[k][0], l.points[k][1]);
      const auto b = to_px(l.points[k + 1][0], l.points[k + 1][1]);
      draw_line(img, a[0], a[1], b[0], b[1], {0, v, v}, 2);
    }
  }
  // boxes
  const auto drawn = boxes_to_draw(out, opt);
  for (int bi : drawn) {
    const auto& b = out.boxes[bi];
    const auto fp = footprint(b);
    std::vector<std::array<double, 2>> poly;
    for (const auto& p : fp) poly.push_back(to_px(p[0], p[1]));
    const Rgb col = class_colour(b.label);
    fill_polygon(img, poly, col, 0.35f);
    for (int k = 0; k < 4; ++k)
      draw_line(img, poly[k][0], poly[k][1], poly[(k + 1) % 4][0], poly[(k + 1) % 4][1], col, 2);
    const auto c0 = to_px(b.center[0], b.center[1]);
    const auto f0 = to_px((fp[0][0] + fp[1][0]) / 2, (fp[0][1] + fp[1][1]) / 2);
    draw_line(img, c0[0], c0[1], f0[0], f0[1], col, 2);  // heading
  }
  // ego (nuScenes ego box: 4.08 x 1.85 m, centre 1.49 m ahead of the ego origin)
  {
    Box3D ego;
    ego.center = {1.485793f, 0, 0};
    ego.size_wlh = {1.85f, 4.08f, 1.5f};
    const auto fp = footprint(ego);
    std::vector<std::array<double, 2>> poly;
    for (const auto& p : fp) poly.push_back(to_px(p[0], p[1]));
    fill_polygon(img, poly, {240, 240, 240}, 0.9f);
    const auto f0 = to_px(3.5, 0), c0 = to_px(1.5, 0);
    draw_line(img, c0[0], c0[1], f0[0], f0[1], {30, 30, 30}, 2);
  }
  // planned trajectory
  if (!out.trajectory.empty()) {
    std::array<double, 2> prev = to_px(0, 0);
    for (const auto& w : out.trajectory) {
      const auto p = to_px(w[0], w[1]);
      draw_line(img, prev[0], prev[1], p[0], p[1], {255, 0, 255}, 3);
      fill_rect(img, int(p[0]) - 3, int(p[1]) - 3, int(p[0]) + 4, int(p[1]) + 4, {255, 255, 255});
      prev = p;
    }
  }
  // scale bar (10 m) bottom-left, title and legend
  const int bar = int(std::lround(10 * ppm));
  const int by = size - (opt.random_weights ? 40 : 18);
  fill_rect(img, 12, by, 12 + bar, by + 4, {255, 255, 255});
  draw_text(img, 12 + bar + 6, by - 4, "10 m", {255, 255, 255}, 2);
  draw_text(img, 8, 8, title, {255, 255, 255}, 2);
  char line[160];
  if (opt.random_weights)
    std::snprintf(line, sizeof line, "%zu of %zu boxes (top by score), %zu lanes (top by score)",
                  drawn.size(), out.boxes.size(), std::min(out.lanes.size(), size_t(opt.max_lanes)));
  else
    std::snprintf(line, sizeof line, "%zu of %zu boxes (score >= %.2f), %zu lanes (top by score)",
                  drawn.size(), out.boxes.size(), opt.box_threshold,
                  std::min(out.lanes.size(), size_t(opt.max_lanes)));
  draw_text(img, 8, 30, line, {180, 180, 180}, 1);
  std::vector<bool> present(10, false);
  for (int bi : drawn) present[std::clamp(out.boxes[bi].label, 0, 9)] = true;
  int ly = 46;
  for (int k = 0; k < 10; ++k) {
    if (!present[k]) continue;
    fill_rect(img, 8, ly, 18, ly + 10, class_colour(k));
    draw_text(img, 24, ly + 1, detection_class_names()[k], {200, 200, 200}, 1);
    ly += 14;
  }
  if (!out.trajectory.empty()) {
    fill_rect(img, 8, ly + 3, 18, ly + 6, {255, 0, 255});
    draw_text(img, 24, ly + 1, "planned trajectory (3 s)", {200, 200, 200}, 1);
  } else {
    draw_text(img, 8, ly + 1, "no trajectory: answer did not parse", {255, 120, 120}, 1);
  }
  if (opt.random_weights) random_banner(img);
  return img;
}

io::Image render_cameras(const PreparedFrame& frame, const std::vector<std::string>& cameras,
                         const FrameOutput& out, const VizOptions& opt, int tile_w) {
  OMNIRT_CHECK(frame.source_images.size() == cameras.size() &&
                   frame.ego_to_source_image.size() == cameras.size(),
               "render_cameras: frame ", frame.index, " has no source images kept");
  // nuScenes display layout: front row FL F FR, back row BL B BR.
  auto slot = [](const std::string& name) -> std::array<int, 2> {
    if (name == "CAM_FRONT_LEFT") return {0, 0};
    if (name == "CAM_FRONT") return {1, 0};
    if (name == "CAM_FRONT_RIGHT") return {2, 0};
    if (name == "CAM_BACK_LEFT") return {0, 1};
    if (name == "CAM_BACK") return {1, 1};
    return {2, 1};
  };
  const io::Image& s0 = frame.source_images[0];
  const int tile_h = std::max(1, int(std::lround(double(tile_w) * s0.height / s0.width)));
  io::Image mosaic(3 * tile_w, 2 * tile_h);
  const auto drawn = boxes_to_draw(out, opt);
  const auto lanes = lanes_to_draw(out, opt);
  for (size_t ci = 0; ci < cameras.size(); ++ci) {
    const io::Image& src = frame.source_images[ci];
    io::Image tile = pil_resize_bicubic(src, tile_w, tile_h);
    const double sx = double(tile_w) / src.width, sy = double(tile_h) / src.height;
    const Mat4d& M = frame.ego_to_source_image[ci];
    auto cam = [&](const std::array<double, 3>& p) {
      std::array<double, 3> r{};
      for (int i = 0; i < 3; ++i) r[i] = M[i * 4] * p[0] + M[i * 4 + 1] * p[1] + M[i * 4 + 2] * p[2] + M[i * 4 + 3];
      return r;  // (u*z, v*z, z) in source pixels
    };
    auto segment = [&](std::array<double, 3> a, std::array<double, 3> b, Rgb c, int th) {
      constexpr double kNear = 0.5;  // metres: clip against the plane in front of the camera
      if (a[2] < kNear && b[2] < kNear) return;
      if (a[2] < kNear || b[2] < kNear) {
        const double t = (kNear - a[2]) / (b[2] - a[2]);
        std::array<double, 3> m{a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]), kNear};
        (a[2] < kNear ? a : b) = m;
      }
      draw_line(tile, a[0] / a[2] * sx, a[1] / a[2] * sy, b[0] / b[2] * sx, b[1] / b[2] * sy, c, th);
    };
    for (int li : lanes) {
      const auto& l = out.lanes[li];
      for (size_t k = 0; k + 1 < l.points.size(); ++k)
        segment(cam({l.points[k][0], l.points[k][1], l.points[k][2]}),
                cam({l.points[k + 1][0], l.points[k + 1][1], l.points[k + 1][2]}), {0, 220, 220}, 1);
    }
    for (int bi : drawn) {
      const auto& b = out.boxes[bi];
      const auto fp = footprint(b);
      const double z0 = b.center[2] - b.size_wlh[2] / 2, z1 = b.center[2] + b.size_wlh[2] / 2;
      std::array<std::array<double, 3>, 8> c;
      for (int k = 0; k < 4; ++k) {
        c[k] = cam({fp[k][0], fp[k][1], z0});
        c[k + 4] = cam({fp[k][0], fp[k][1], z1});
      }
      const Rgb col = class_colour(b.label);
      for (int k = 0; k < 4; ++k) {
        segment(c[k], c[(k + 1) % 4], col, 2);
        segment(c[k + 4], c[(k + 1) % 4 + 4], col, 2);
        segment(c[k], c[k + 4], col, 2);
      }
      segment(c[0], c[5], col, 1);  // front face cross
      segment(c[1], c[4], col, 1);
    }
    draw_text(tile, 6, 6, cameras[ci], {255, 255, 255}, 2);
    const auto s = slot(cameras[ci]);
    for (int y = 0; y < tile_h; ++y)
      std::copy(tile.row(y), tile.row(y) + size_t(tile_w) * 3,
                mosaic.row(s[1] * tile_h + y) + size_t(s[0]) * tile_w * 3);
  }
  if (opt.random_weights) random_banner(mosaic);
  return mosaic;
}

io::Image contact_sheet(const std::vector<io::Image>& bevs, const std::vector<std::string>& labels,
                        int thumb, int columns) {
  OMNIRT_CHECK(!bevs.empty(), "contact_sheet: no images");
  const int n = int(bevs.size()), cols = std::min(columns, n), rows = (n + cols - 1) / cols;
  io::Image sheet(cols * thumb, rows * thumb);
  for (int i = 0; i < n; ++i) {
    io::Image t = pil_resize_bicubic(bevs[i], thumb, thumb);
    if (i < int(labels.size())) {
      fill_rect(t, 0, thumb - 16, thumb, thumb, {0, 0, 0}, 0.6f);
      draw_text(t, 4, thumb - 13, labels[i], {255, 255, 255}, 1);
    }
    const int cx = (i % cols) * thumb, cy = (i / cols) * thumb;
    for (int y = 0; y < thumb; ++y)
      std::copy(t.row(y), t.row(y) + size_t(thumb) * 3, sheet.row(cy + y) + size_t(cx) * 3);
  }
  return sheet;
}

}  // namespace omnirt::pipeline::viz
