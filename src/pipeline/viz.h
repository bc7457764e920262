// Pictures of a frame's results: a bird's-eye view (ego, boxes coloured by class, lanes, the
// planned trajectory, metric grid and scale bar), the camera images with projected 3-D boxes
// and lanes in a 3x2 mosaic, and a contact sheet of a scene's BEVs. Small hand-written raster
// routines (lines, filled polygons, stb_easy_font text) on io::Image.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "io/image.h"
#include "pipeline/engines.h"
#include "pipeline/frame.h"

namespace omnirt::pipeline::viz {

using Rgb = std::array<uint8_t, 3>;

// Raster primitives (clipped to the image; alpha in [0, 1]).
void draw_line(io::Image& img, double x0, double y0, double x1, double y1, Rgb c,
               int thickness = 1, float alpha = 1.f);
void fill_polygon(io::Image& img, const std::vector<std::array<double, 2>>& pts, Rgb c,
                  float alpha = 1.f);
void fill_rect(io::Image& img, int x0, int y0, int x1, int y1, Rgb c, float alpha = 1.f);
void draw_text(io::Image& img, int x, int y, const std::string& text, Rgb c, int scale = 2);
int text_width(const std::string& text, int scale = 2);

Rgb class_colour(int label);

struct VizOptions {
  float box_threshold = 0.3f;   // boxes drawn: score >= threshold (at most max_boxes)
  int max_boxes = 60;
  int max_lanes = 20;           // the highest-scoring lanes
  bool random_weights = false;  // stamps "random weights" on the pictures
};

// Bird's-eye view, `size` px square, `range_m` metres from the ego to the edge.
io::Image render_bev(const FrameOutput& out, const std::string& title, const VizOptions& opt,
                     int size = 800, double range_m = 50.0);
// The cameras (model order of `cameras`) with projected boxes and lanes, 3x2 mosaic.
io::Image render_cameras(const PreparedFrame& frame, const std::vector<std::string>& cameras,
                         const FrameOutput& out, const VizOptions& opt, int tile_w = 533);
// Grid of BEV thumbnails.
io::Image contact_sheet(const std::vector<io::Image>& bevs, const std::vector<std::string>& labels,
                        int thumb = 320, int columns = 4);

}  // namespace omnirt::pipeline::viz
