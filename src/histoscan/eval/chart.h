#pragma once
// The small drawing kit behind plots.cpp: a white cairo canvas with text, and panels that
// map data to pixels and draw axes, ticks, grid, lines and a legend. Internal to eval.
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

typedef struct _cairo cairo_t;                  // NOLINT(bugprone-reserved-identifier): cairo's own names,
typedef struct _cairo_surface cairo_surface_t;  // NOLINT(bugprone-reserved-identifier): declared as cairo.h does

namespace histoscan::eval::chart {

struct Rgb {
  double r = 0, g = 0, b = 0;
};

// Colour i of a palette that stays distinguishable for colour-blind readers (Tableau 10).
Rgb palette(std::size_t i);
inline constexpr Rgb kBlack{0.1, 0.1, 0.1};
inline constexpr Rgb kGrey{0.45, 0.45, 0.45};
inline constexpr Rgb kTickText{0.2, 0.2, 0.2};

enum class Align { start, middle, end };

// A white RGB image to draw on; text is DejaVu Sans (Debian's default sans font).
class Canvas {
 public:
  Canvas(int width, int height);
  ~Canvas();
  Canvas(const Canvas&) = delete;
  Canvas& operator=(const Canvas&) = delete;
  cairo_t* cr() const { return cr_; }
  int width() const { return width_; }
  int height() const { return height_; }
  // Draws `s` anchored at (x, y) by its horizontal and vertical alignment; vertical text
  // reads bottom to top, as a y-axis label does.
  void text(const std::string& s, double x, double y, double size, Align h, Align v, bool bold = false, Rgb colour = kBlack,
            bool vertical = false);
  double text_width(const std::string& s, double size, bool bold = false) const;
  // PNG bytes of what was drawn; throws std::runtime_error if cairo fails.
  std::vector<unsigned char> png() const;
  // Writes the PNG atomically; InputError naming `path` when it can't be written.
  void write_png(const std::filesystem::path& path) const;

 private:
  int width_, height_;
  cairo_surface_t* surface_;
  cairo_t* cr_;
};

struct Axis {
  double lo = 0, hi = 1;
  std::string label;
  bool log = false;      // base-10 log scale; lo and hi must be > 0
  bool integer = false;  // ticks only at whole numbers (epochs)
  bool tick_labels = true;
  double title_gap = 0;  // least distance from a y axis to its title, to line up stacked panels
};

// One line of a legend: a line sample, a marker, a filled box, or combinations.
struct LegendEntry {
  std::string label;
  Rgb colour;
  bool line = true, dashed = false, marker = false, box = false;
  double marker_radius = 6;
};

// Where a legend may go inside the plot area: a 3x3 grid of spots (row * 3 + column).
enum class Place {
  upper_left,
  upper_center,
  upper_right,
  center_left,
  center,
  center_right,
  lower_left,
  lower_center,
  lower_right
};

// A rectangle of the canvas holding one chart; (left, top, width, height) is the plot area
// inside the axes, so callers keep room outside it for tick labels and axis titles.
class Panel {
 public:
  Panel(Canvas& canvas, double left, double top, double width, double height, Axis x, Axis y);
  double px(double x) const;
  double py(double y) const;
  // White plot area, grid at the ticks, frame, tick labels, axis titles and a title above.
  void frame(const std::string& title, double title_size = 20);
  // A polyline; NaN points break it. Recorded so the legend can avoid it.
  void line(const std::vector<double>& x, const std::vector<double>& y, Rgb colour, double width = 2.5, bool dashed = false);
  // A filled circle with a dark edge, for operating points.
  void marker(double x, double y, Rgb colour, double radius = 7);
  // A bar from the x axis floor up to y between x0 and x1.
  void bar(double x0, double x1, double y, Rgb colour);
  // Draws the legend at the place covering the fewest data points; ties go to the earliest
  // of `preference`, then corners, then edge centres.
  void legend(const std::vector<LegendEntry>& entries, std::vector<Place> preference, double size = 14);
  Canvas& canvas() { return canvas_; }

 private:
  void clip() const;
  void record(double px, double py);
  double score_box(double x0, double y0, double x1, double y1) const;
  Canvas& canvas_;
  double left_, top_, width_, height_;
  Axis x_, y_;
  std::vector<std::pair<double, double>> drawn_;  // pixel points of data, for legend placement
};

// Tick positions for an axis: "nice" steps (1, 2, 2.5, 5 x 10^k) or decades on log axes.
std::vector<double> ticks(const Axis& axis, int max_ticks);
// The label under a tick, with as many decimals as the step needs.
std::string tick_label(double value, const std::vector<double>& all_ticks, bool log);
// Widens [lo, hi] to the enclosing nice ticks; a degenerate range gets some room.
std::pair<double, double> nice_range(double lo, double hi, bool log);
// 12345 -> "12,345".
std::string thousands(long long n);

}  // namespace histoscan::eval::chart
