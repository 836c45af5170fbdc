#include "histoscan/eval/chart.h"

#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "histoscan/util/atomic_file.h"

namespace histoscan::eval::chart {

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr Rgb kGrid{0.87, 0.87, 0.87};
constexpr Rgb kMinorGrid{0.94, 0.94, 0.94};
constexpr Rgb kFrame{0.35, 0.35, 0.35};

void set_colour(cairo_t* cr, Rgb c, double alpha = 1.0) { cairo_set_source_rgba(cr, c.r, c.g, c.b, alpha); }

void set_font(cairo_t* cr, double size, bool bold) {
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
}

cairo_status_t append_bytes(void* closure, const unsigned char* data, unsigned int length) {
  auto* out = static_cast<std::vector<unsigned char>*>(closure);
  out->insert(out->end(), data, data + length);
  return CAIRO_STATUS_SUCCESS;
}

// Superscript digits so a decade tick reads 10⁻³ rather than 1e-03.
std::string superscript(int n) {
  static const char* const digits[] = {"⁰", "¹", "²", "³", "⁴", "⁵", "⁶", "⁷", "⁸", "⁹"};
  std::string out = n < 0 ? "⁻" : "";
  for (char c : std::to_string(std::abs(n))) out += digits[c - '0'];
  return out;
}

bool is_decade(double v) {
  double e = std::log10(v);
  return std::fabs(e - std::round(e)) < 1e-9;
}

}  // namespace

Rgb palette(std::size_t i) {
  static const Rgb colours[] = {{0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173}, {0.839, 0.153, 0.157},
                                {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294}, {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498},
                                {0.737, 0.741, 0.133}, {0.090, 0.745, 0.812}};
  return colours[i % 10];
}

Canvas::Canvas(int width, int height)
    : width_(width),
      height_(height),
      surface_(cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height)),
      cr_(cairo_create(surface_)) {
  if (cairo_status(cr_) != CAIRO_STATUS_SUCCESS) {
    cairo_destroy(cr_);
    cairo_surface_destroy(surface_);
    throw std::runtime_error("cairo cannot create a " + std::to_string(width) + "x" + std::to_string(height) + " image");
  }
  cairo_set_source_rgb(cr_, 1, 1, 1);
  cairo_paint(cr_);
  cairo_set_line_join(cr_, CAIRO_LINE_JOIN_ROUND);
  cairo_set_line_cap(cr_, CAIRO_LINE_CAP_ROUND);
}

Canvas::~Canvas() {
  cairo_destroy(cr_);
  cairo_surface_destroy(surface_);
}

void Canvas::text(const std::string& s, double x, double y, double size, Align h, Align v, bool bold, Rgb colour, bool vertical) {
  cairo_save(cr_);
  set_font(cr_, size, bold);
  set_colour(cr_, colour);
  cairo_translate(cr_, x, y);
  if (vertical) cairo_rotate(cr_, -kPi / 2);
  cairo_text_extents_t ext;
  cairo_text_extents(cr_, s.c_str(), &ext);
  double dx = h == Align::start ? 0 : h == Align::middle ? -ext.x_advance / 2 : -ext.x_advance;
  // Cap height and descender of DejaVu Sans as fractions of the size: aligning on them
  // rather than on each string's ink keeps a row of labels on one baseline.
  double dy = v == Align::start ? 0.76 * size : v == Align::middle ? 0.36 * size : -0.24 * size;
  cairo_move_to(cr_, dx, dy);
  cairo_show_text(cr_, s.c_str());
  cairo_restore(cr_);
}

double Canvas::text_width(const std::string& s, double size, bool bold) const {
  cairo_save(cr_);
  set_font(cr_, size, bold);
  cairo_text_extents_t ext;
  cairo_text_extents(cr_, s.c_str(), &ext);
  cairo_restore(cr_);
  return ext.x_advance;
}

std::vector<unsigned char> Canvas::png() const {
  cairo_surface_flush(surface_);
  std::vector<unsigned char> out;
  if (cairo_surface_write_to_png_stream(surface_, append_bytes, &out) != CAIRO_STATUS_SUCCESS)
    throw std::runtime_error("cairo cannot encode a PNG");
  return out;
}

void Canvas::write_png(const std::filesystem::path& path) const {
  std::vector<unsigned char> bytes = png();
  write_file_atomic(path, [&](std::ostream& f) {
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  });
}

std::vector<double> ticks(const Axis& axis, int max_ticks) {
  std::vector<double> out;
  max_ticks = std::max(max_ticks, 2);
  if (axis.log) {
    int first = static_cast<int>(std::floor(std::log10(axis.lo))), last = static_cast<int>(std::ceil(std::log10(axis.hi)));
    bool decades_only = std::log10(axis.hi / axis.lo) >= 1.9;
    int stride = std::max(1, (last - first + max_ticks - 1) / max_ticks);
    for (int e = first; e <= last; e += decades_only ? stride : 1)
      for (double m : decades_only ? std::vector<double>{1} : std::vector<double>{1, 2, 5}) {
        double v = m * std::pow(10.0, e);
        if (v >= axis.lo * (1 - 1e-9) && v <= axis.hi * (1 + 1e-9)) out.push_back(v);
      }
    return out;
  }
  // A short axis can fall between step sizes and get two ticks; ask for more until three.
  for (int want = max_ticks; out.size() < 3 && want <= max_ticks + 4; ++want) {
    out.clear();
    double raw = (axis.hi - axis.lo) / want, magnitude = std::pow(10.0, std::floor(std::log10(raw)));
    double step = 10 * magnitude;
    for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
      if (m * magnitude >= raw * (1 - 1e-9) && !(axis.integer && m == 2.5)) {
        step = m * magnitude;
        break;
      }
    if (axis.integer) step = std::max(step, 1.0);
    for (double k = std::ceil(axis.lo / step - 1e-9); k * step <= axis.hi + step * 1e-9; ++k)
      out.push_back(std::fabs(k) < 1e-12 ? 0.0 : k * step);
    if (axis.integer && step == 1.0) break;
  }
  return out;
}

std::string tick_label(double value, const std::vector<double>& all_ticks, bool log) {
  char buf[64];
  if (log) {
    if (std::all_of(all_ticks.begin(), all_ticks.end(), is_decade))
      return "10" + superscript(static_cast<int>(std::lround(std::log10(value))));
    std::snprintf(buf, sizeof buf, "%g", value);
    return buf;
  }
  double step = all_ticks.size() > 1 ? all_ticks[1] - all_ticks[0] : 1.0;
  int decimals = 0;
  while (decimals < 8 && std::fabs(step * std::pow(10.0, decimals) - std::round(step * std::pow(10.0, decimals))) > 1e-6)
    ++decimals;
  if (decimals == 0 && std::fabs(value) >= 1000) return thousands(std::llround(value));
  std::snprintf(buf, sizeof buf, "%.*f", decimals, value == 0 ? 0.0 : value);
  return buf;
}

std::pair<double, double> nice_range(double lo, double hi, bool log) {
  // Matplotlib-style 5% margins keep data off the frame; ticks stay at round values inside.
  if (log) {
    double a = std::log10(lo), b = std::log10(hi);
    double pad = b - a < 1e-9 ? 0.4 : 0.05 * (b - a);
    return {std::pow(10.0, a - pad), std::pow(10.0, b + pad)};
  }
  double span = hi - lo;
  if (span < 1e-12) span = std::max(std::fabs(hi), 1.0) * 0.2;
  double pad = hi - lo < 1e-12 ? span / 2 : 0.05 * span;
  return {lo - pad, hi + pad};
}

std::string thousands(long long n) {
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

Panel::Panel(Canvas& canvas, double left, double top, double width, double height, Axis x, Axis y)
    : canvas_(canvas), left_(left), top_(top), width_(width), height_(height), x_(std::move(x)), y_(std::move(y)) {}

double Panel::px(double x) const {
  double f = x_.log ? std::log10(x / x_.lo) / std::log10(x_.hi / x_.lo) : (x - x_.lo) / (x_.hi - x_.lo);
  return left_ + f * width_;
}

double Panel::py(double y) const {
  double f = y_.log ? std::log10(y / y_.lo) / std::log10(y_.hi / y_.lo) : (y - y_.lo) / (y_.hi - y_.lo);
  return top_ + (1 - f) * height_;
}

void Panel::clip() const {
  cairo_rectangle(canvas_.cr(), left_, top_, width_, height_);
  cairo_clip(canvas_.cr());
}

void Panel::frame(const std::string& title, double title_size) {
  cairo_t* cr = canvas_.cr();
  const double bottom = top_ + height_, right = left_ + width_;
  std::vector<double> xt = ticks(x_, static_cast<int>(width_ / 90)), yt = ticks(y_, static_cast<int>(height_ / 45));
  cairo_save(cr);
  cairo_set_line_width(cr, 1);
  const double decades = y_.log ? std::log10(y_.hi / y_.lo) : 0;
  if (decades >= 1.9 && decades <= 3.5) {  // unlabelled 2..9 lines between decade ticks
    set_colour(cr, kMinorGrid);
    for (int e = static_cast<int>(std::floor(std::log10(y_.lo))); e <= std::ceil(std::log10(y_.hi)); ++e)
      for (int m = 2; m <= 9; ++m) {
        double v = m * std::pow(10.0, e);
        if (v <= y_.lo || v >= y_.hi) continue;
        cairo_move_to(cr, left_, std::round(py(v)) + 0.5);
        cairo_line_to(cr, right, std::round(py(v)) + 0.5);
      }
    cairo_stroke(cr);
  }
  set_colour(cr, kGrid);
  for (double t : xt) cairo_move_to(cr, std::round(px(t)) + 0.5, top_), cairo_line_to(cr, std::round(px(t)) + 0.5, bottom);
  for (double t : yt) cairo_move_to(cr, left_, std::round(py(t)) + 0.5), cairo_line_to(cr, right, std::round(py(t)) + 0.5);
  cairo_stroke(cr);
  set_colour(cr, kFrame);
  cairo_rectangle(cr, std::round(left_) + 0.5, std::round(top_) + 0.5, std::round(width_), std::round(height_));
  for (double t : xt) cairo_move_to(cr, std::round(px(t)) + 0.5, bottom), cairo_line_to(cr, std::round(px(t)) + 0.5, bottom + 5);
  for (double t : yt) cairo_move_to(cr, left_ - 5, std::round(py(t)) + 0.5), cairo_line_to(cr, left_, std::round(py(t)) + 0.5);
  cairo_stroke(cr);
  cairo_restore(cr);

  double widest = 0;
  for (double t : yt) {
    std::string s = tick_label(t, yt, y_.log);
    widest = std::max(widest, canvas_.text_width(s, 14));
    canvas_.text(s, left_ - 9, py(t), 14, Align::end, Align::middle, false, kTickText);
  }
  if (x_.tick_labels)
    for (double t : xt)
      canvas_.text(tick_label(t, xt, x_.log), px(t), bottom + 9, 14, Align::middle, Align::start, false, kTickText);
  if (!x_.label.empty())
    canvas_.text(x_.label, left_ + width_ / 2, bottom + (x_.tick_labels ? 34 : 10), 16, Align::middle, Align::start);
  if (!y_.label.empty())
    canvas_.text(y_.label, left_ - std::max(widest + 18, y_.title_gap), top_ + height_ / 2, 16, Align::middle, Align::end, false,
                 kBlack, true);
  if (!title.empty()) canvas_.text(title, left_ + width_ / 2, top_ - 14, title_size, Align::middle, Align::end, true);
}

void Panel::record(double x, double y) {
  if (std::isfinite(x) && std::isfinite(y)) drawn_.emplace_back(x, y);
}

void Panel::line(const std::vector<double>& x, const std::vector<double>& y, Rgb colour, double width, bool dashed) {
  cairo_t* cr = canvas_.cr();
  cairo_save(cr);
  clip();
  set_colour(cr, colour);
  cairo_set_line_width(cr, width);
  const double dash[] = {9, 6};
  if (dashed) cairo_set_dash(cr, dash, 2, 0);
  bool pen_down = false;
  double last_x = 0, last_y = 0;
  for (std::size_t i = 0; i < std::min(x.size(), y.size()); ++i) {
    if (!std::isfinite(x[i]) || !std::isfinite(y[i])) {
      pen_down = false;
      continue;
    }
    double a = px(x[i]), b = py(y[i]);
    if (pen_down) {
      cairo_line_to(cr, a, b);
      int steps = static_cast<int>(std::hypot(a - last_x, b - last_y) / 5) + 1;
      for (int k = 1; k <= steps; ++k) record(last_x + (a - last_x) * k / steps, last_y + (b - last_y) * k / steps);
    } else {
      cairo_move_to(cr, a, b);
      record(a, b);
    }
    pen_down = true;
    last_x = a, last_y = b;
  }
  cairo_stroke(cr);
  cairo_restore(cr);
}

void Panel::marker(double x, double y, Rgb colour, double radius) {
  if (!std::isfinite(x) || !std::isfinite(y)) return;  // NaN would put cairo in an error state
  cairo_t* cr = canvas_.cr();
  double a = px(x), b = py(y);
  cairo_save(cr);
  cairo_new_path(cr);
  cairo_arc(cr, a, b, radius, 0, 2 * kPi);
  set_colour(cr, colour);
  cairo_fill_preserve(cr);
  set_colour(cr, kBlack);
  cairo_set_line_width(cr, radius < 5 ? 1 : 1.5);
  cairo_stroke(cr);
  cairo_restore(cr);
  for (double dx : {-radius, 0.0, radius})
    for (double dy : {-radius, 0.0, radius}) record(a + dx, b + dy);
}

void Panel::bar(double x0, double x1, double y, Rgb colour) {
  cairo_t* cr = canvas_.cr();
  double a = px(x0), b = px(x1), top = py(y), floor = top_ + height_;
  cairo_save(cr);
  clip();
  cairo_rectangle(cr, a, top, b - a, floor - top);
  set_colour(cr, colour);
  cairo_fill_preserve(cr);
  set_colour(cr, kFrame);
  cairo_set_line_width(cr, 1);
  cairo_stroke(cr);
  cairo_restore(cr);
  for (double u = a; u <= b; u += 5)
    for (double v = top; v <= floor; v += 5) record(u, v);
}

double Panel::score_box(double x0, double y0, double x1, double y1) const {
  double hits = 0;
  for (const auto& [x, y] : drawn_)
    if (x >= x0 - 4 && x <= x1 + 4 && y >= y0 - 4 && y <= y1 + 4) hits += 1;
  return hits;
}

void Panel::legend(const std::vector<LegendEntry>& entries, std::vector<Place> preference, double size) {
  if (entries.empty()) return;
  using P = Place;
  for (Place p : {P::upper_left, P::upper_right, P::lower_left, P::lower_right, P::upper_center, P::lower_center, P::center_left,
                  P::center_right, P::center})
    if (std::find(preference.begin(), preference.end(), p) == preference.end()) preference.push_back(p);
  const double pad = 10, sample = 34, row = size * 1.55;
  double text_w = 0;
  for (const auto& e : entries) text_w = std::max(text_w, canvas_.text_width(e.label, size));
  const double w = pad + sample + 8 + text_w + pad, h = 2 * pad + row * (entries.size() - 1) + size;
  double best = -1, bx = 0, by = 0;
  for (Place p : preference) {
    const int r = static_cast<int>(p) / 3, c = static_cast<int>(p) % 3;
    double x = c == 0 ? left_ + 10 : c == 1 ? left_ + (width_ - w) / 2 : left_ + width_ - 10 - w;
    double y = r == 0 ? top_ + 10 : r == 1 ? top_ + (height_ - h) / 2 : top_ + height_ - 10 - h;
    double score = score_box(x, y, x + w, y + h);
    if (best < 0 || score < best) best = score, bx = std::round(x), by = std::round(y);
  }
  cairo_t* cr = canvas_.cr();
  cairo_save(cr);
  cairo_rectangle(cr, bx + 0.5, by + 0.5, std::round(w), std::round(h));
  cairo_set_source_rgba(cr, 1, 1, 1, 0.92);
  cairo_fill_preserve(cr);
  set_colour(cr, {0.75, 0.75, 0.75});
  cairo_set_line_width(cr, 1);
  cairo_stroke(cr);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const LegendEntry& e = entries[i];
    double cy = by + pad + size / 2 + row * i, sx = bx + pad;
    set_colour(cr, e.colour);
    if (e.box) {
      cairo_rectangle(cr, sx + 4, cy - size * 0.45, sample - 8, size * 0.9);
      cairo_fill(cr);
    }
    if (e.line) {
      const double dash[] = {7, 4};
      cairo_set_dash(cr, dash, e.dashed ? 2 : 0, 0);
      cairo_set_line_width(cr, 2.5);
      cairo_move_to(cr, sx, cy);
      cairo_line_to(cr, sx + sample, cy);
      cairo_stroke(cr);
      cairo_set_dash(cr, nullptr, 0, 0);
    }
    if (e.marker) {
      cairo_new_path(cr);  // show_text left a current point; arc would join it with a line
      cairo_arc(cr, sx + sample / 2, cy, e.marker_radius, 0, 2 * kPi);
      cairo_fill_preserve(cr);
      set_colour(cr, kBlack);
      cairo_set_line_width(cr, e.marker_radius < 5 ? 1 : 1.5);
      cairo_stroke(cr);
    }
    canvas_.text(e.label, sx + sample + 8, cy, size, Align::start, Align::middle);
  }
  cairo_restore(cr);
}

}  // namespace histoscan::eval::chart
