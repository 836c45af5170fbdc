#include "histoscan/eval/plots.h"

#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "histoscan/eval/chart.h"
#include "histoscan/util/error.h"

#include "histoscan/util/csv.h"

namespace histoscan::eval {

namespace {

using chart::Align;
using chart::LegendEntry;
using chart::Place;

// Plot area of a single-panel chart: room on the left for tick labels and the y title,
// below for tick labels and the x title.
constexpr double kLeft = 95, kTop = 60, kWidth = kPlotWidth - kLeft - 30, kHeight = kPlotHeight - kTop - 85;

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

void check_series(const std::vector<Series>& curves, const char* what) {
  for (const auto& s : curves)
    if (s.x.size() != s.y.size())
      throw std::invalid_argument(std::string(what) + ": series '" + s.name + "' has " + std::to_string(s.x.size()) +
                                  " x values but " + std::to_string(s.y.size()) + " y values");
}

// Curves, then their operating points on top, each point in its curve's colour.
std::vector<LegendEntry> draw_curves(chart::Panel& panel, const std::vector<Series>& curves, const std::vector<Marker>& points) {
  std::vector<LegendEntry> legend;
  for (std::size_t i = 0; i < curves.size(); ++i) {
    panel.line(curves[i].x, curves[i].y, chart::palette(i), 2.5);
    legend.push_back({curves[i].name, chart::palette(i)});
  }
  for (std::size_t i = 0; i < points.size(); ++i) {
    panel.marker(points[i].x, points[i].y, chart::palette(i));
    legend.push_back({points[i].name, chart::palette(i), false, false, true});
  }
  return legend;
}

// Matplotlib's "Blues" colour map, so darker means a larger share of the row.
chart::Rgb blues(double f) {
  static const chart::Rgb stops[] = {
      {0.969, 0.984, 1.000}, {0.776, 0.859, 0.937}, {0.420, 0.682, 0.839}, {0.129, 0.443, 0.710}, {0.031, 0.188, 0.420}};
  f = std::clamp(f, 0.0, 1.0) * 4;
  int i = std::min(3, static_cast<int>(f));
  double t = f - i;
  const chart::Rgb &a = stops[i], &b = stops[i + 1];
  return {a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t};
}

void fill_rect(chart::Canvas& canvas, double x, double y, double w, double h, chart::Rgb c) {
  cairo_rectangle(canvas.cr(), x, y, w, h);
  cairo_set_source_rgb(canvas.cr(), c.r, c.g, c.b);
  cairo_fill(canvas.cr());
}

void draw_confusion_cell(chart::Canvas& canvas, double x, double y, double side, const char* name, long long count,
                         long long row_total) {
  double f = row_total > 0 ? static_cast<double>(count) / row_total : 0.0;
  fill_rect(canvas, x, y, side, side, blues(f));
  chart::Rgb ink = f > 0.55 ? chart::Rgb{1, 1, 1} : chart::kBlack;
  canvas.text(name, x + 12, y + 10, 15, Align::start, Align::start, true, ink);
  canvas.text(chart::thousands(count), x + side / 2, y + side / 2 - 4, 30, Align::middle, Align::end, true, ink);
  std::string share = row_total > 0 ? fixed(100 * f, 1) + "% of row" : "no samples";
  canvas.text(share, x + side / 2, y + side / 2 + 10, 17, Align::middle, Align::start, false, ink);
}

// A vertical scale from 0% to 100% beside the grid, so shading can be read as a number.
void draw_colour_bar(chart::Canvas& canvas, double x, double top, double height) {
  for (int i = 0; i < static_cast<int>(height); ++i) fill_rect(canvas, x, top + height - i - 1, 22, 1.5, blues(i / height));
  cairo_t* cr = canvas.cr();
  cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, x + 0.5, top + 0.5, 22, std::round(height));
  for (int p = 0; p <= 100; p += 25) {
    double y = std::round(top + height * (1 - p / 100.0)) + 0.5;
    cairo_move_to(cr, x + 22, y);
    cairo_line_to(cr, x + 27, y);
    canvas.text(std::to_string(p) + "%", x + 31, y, 14, Align::start, Align::middle);
  }
  cairo_stroke(cr);
  canvas.text("Share of the true class (row)", x + 85, top + height / 2, 16, Align::middle, Align::end, false, chart::kBlack,
              true);
}

double parse_number(const std::filesystem::path& path, unsigned line, const char* column, const std::string& text) {
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0')
    throw InputError(path.string() + " line " + std::to_string(line) + ": " + column + " '" + text +
                     "' is not a number; history.csv holds one number per column");
  return v;
}

HistoryRow parse_history_row(const std::filesystem::path& path, unsigned line, const std::string (&cells)[7]) {
  static const char* const names[] = {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "val_auc", "lr"};
  double v[7];
  for (int i = 0; i < 7; ++i) v[i] = parse_number(path, line, names[i], cells[i]);
  if (!(v[0] >= 0 && v[0] == std::floor(v[0]) && v[0] < 1e9))
    throw InputError(path.string() + " line " + std::to_string(line) + ": epoch '" + cells[0] + "' is not a whole number >= 0");
  if (!(v[6] >= 0 && std::isfinite(v[6])))
    throw InputError(path.string() + " line " + std::to_string(line) + ": lr '" + cells[6] +
                     "' is not a learning rate (a finite number >= 0)");
  return {static_cast<int>(v[0]), v[1], v[2], v[3], v[4], v[5], v[6]};
}

// Finite values of several columns together; {0, 1} when none is finite.
std::pair<double, double> finite_range(std::initializer_list<const std::vector<double>*> columns, bool positive) {
  double lo = INFINITY, hi = -INFINITY;
  for (const auto* c : columns)
    for (double v : *c)
      if (std::isfinite(v) && (!positive || v > 0)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (lo > hi) return {positive ? 0.1 : 0.0, 1.0};
  return {lo, hi};
}

// The three stacked panels of plot_history, sharing one epoch axis.
class HistoryChart {
 public:
  HistoryChart(chart::Canvas& canvas, const std::vector<HistoryRow>& rows) : canvas_(canvas), rows_(rows) {
    for (const auto& r : rows) {
      epoch_.push_back(r.epoch), loss_.push_back(r.loss), acc_.push_back(r.accuracy);
      val_loss_.push_back(r.val_loss), val_acc_.push_back(r.val_accuracy), val_auc_.push_back(r.val_auc);
      lr_.push_back(r.lr);
    }
    auto [lo, hi] = std::minmax_element(epoch_.begin(), epoch_.end());
    auto [e0, e1] = chart::nice_range(*lo, *hi, false);
    x_ = {e0, e1, "", false, true, false};
    dots_ = rows.size() <= 40;  // dots help read short runs and clutter long ones
  }

  void loss_panel(double top, double height) {
    chart::Panel p = panel(top, height, {&loss_, &val_loss_}, "Cross-entropy loss", false);
    p.frame("Loss", 16);
    draw(p, loss_, chart::palette(0), false);
    draw(p, val_loss_, chart::palette(1), false);
    std::vector<LegendEntry> legend{entry("Training", 0, false), entry("Validation", 1, false)};
    std::size_t best = 0;  // best.pt is the epoch of lowest val_loss, so point it out
    for (std::size_t i = 0; i < rows_.size(); ++i)
      if (std::isfinite(val_loss_[i]) && !(val_loss_[i] >= val_loss_[best])) best = i;
    if (std::isfinite(val_loss_[best])) {
      p.marker(epoch_[best], val_loss_[best], chart::palette(3), 7);
      legend.push_back(
          {"Lowest validation loss (epoch " + std::to_string(rows_[best].epoch) + ")", chart::palette(3), false, false, true});
    }
    p.legend(legend, {Place::upper_right, Place::lower_left});
  }

  void accuracy_panel(double top, double height) {
    chart::Panel p = panel(top, height, {&acc_, &val_acc_, &val_auc_}, "Accuracy / AUC", false);
    p.frame("Accuracy and AUC", 16);
    draw(p, acc_, chart::palette(0), false);
    draw(p, val_acc_, chart::palette(1), false);
    draw(p, val_auc_, chart::palette(2), true);
    p.legend({entry("Training accuracy", 0, false), entry("Validation accuracy", 1, false), entry("Validation AUC", 2, true)},
             {Place::lower_right, Place::upper_left});
  }

  void learning_rate_panel(double top, double height) {
    const bool log = std::all_of(lr_.begin(), lr_.end(), [](double v) { return v > 0; });
    x_.tick_labels = true;
    x_.label = "Epoch";
    chart::Panel p = panel(top, height, {&lr_}, "Learning rate", log);
    p.frame(log ? "Learning rate (log scale)" : "Learning rate", 16);
    draw(p, lr_, chart::palette(4), false);
  }

 private:
  static constexpr double kDot = 3.5;
  static constexpr double kTitleGap = 72;  // the three y titles line up

  chart::Panel panel(double top, double height, std::initializer_list<const std::vector<double>*> columns,
                     const std::string& label, bool log) {
    auto [lo, hi] = finite_range(columns, log);
    auto [y0, y1] = chart::nice_range(lo, hi, log);
    return chart::Panel(canvas_, kLeft, top, kWidth, height, x_, {y0, y1, label, log, false, true, kTitleGap});
  }

  void draw(chart::Panel& p, const std::vector<double>& y, chart::Rgb colour, bool dashed) const {
    p.line(epoch_, y, colour, 2.5, dashed);
    if (dots_)
      for (std::size_t i = 0; i < y.size(); ++i)
        if (std::isfinite(y[i])) p.marker(epoch_[i], y[i], colour, kDot);
  }

  LegendEntry entry(const std::string& label, std::size_t colour, bool dashed) const {
    return {label, chart::palette(colour), true, dashed, dots_, false, kDot};
  }

  chart::Canvas& canvas_;
  const std::vector<HistoryRow>& rows_;
  std::vector<double> epoch_, loss_, acc_, val_loss_, val_acc_, val_auc_, lr_;
  chart::Axis x_;
  bool dots_ = false;
};

}  // namespace

void plot_roc(const std::filesystem::path& path, const std::vector<Series>& curves, const std::vector<Marker>& points,
              const std::string& title) {
  check_series(curves, "plot_roc");
  chart::Canvas canvas(kPlotWidth, kPlotHeight);
  chart::Panel panel(canvas, kLeft, kTop, kWidth, kHeight, {-0.02, 1.02, "False positive rate (1 - specificity)"},
                     {-0.02, 1.02, "True positive rate (sensitivity)"});
  panel.frame(title);
  panel.line({0, 1}, {0, 1}, chart::kGrey, 1.5, true);
  std::vector<LegendEntry> legend = draw_curves(panel, curves, points);
  legend.push_back({"Chance (AUC 0.5)", chart::kGrey, true, true});
  panel.legend(legend, {Place::lower_right, Place::upper_left});
  canvas.write_png(path);
}

void plot_pr(const std::filesystem::path& path, const std::vector<Series>& curves, const std::vector<Marker>& points,
             double positive_rate, const std::string& title) {
  check_series(curves, "plot_pr");
  chart::Canvas canvas(kPlotWidth, kPlotHeight);
  chart::Panel panel(canvas, kLeft, kTop, kWidth, kHeight, {-0.02, 1.02, "Recall (sensitivity)"},
                     {-0.02, 1.02, "Precision (positive predictive value)"});
  panel.frame(title);
  panel.line({0, 1}, {positive_rate, positive_rate}, chart::kGrey, 1.5, true);
  std::vector<LegendEntry> legend = draw_curves(panel, curves, points);
  legend.push_back({"Chance (positive rate " + fixed(positive_rate, 2) + ")", chart::kGrey, true, true});
  panel.legend(legend, {Place::lower_left, Place::lower_right});
  canvas.write_png(path);
}

void plot_confusion(const std::filesystem::path& path, const Confusion& c, double threshold) {
  chart::Canvas canvas(kPlotWidth, kPlotHeight);
  const double side = 190, left = 235, top = 105;
  canvas.text("Confusion matrix (threshold " + fixed(threshold, 2) + ")", kPlotWidth / 2.0, 44, 20, Align::middle, Align::end,
              true);
  canvas.text(
      "n = " + chart::thousands(c.tn + c.fp + c.fn + c.tp) + "; tumour is predicted when p(tumour) \u2265 " + fixed(threshold, 2),
      kPlotWidth / 2.0, 72, 14, Align::middle, Align::end, false, chart::kGrey);
  draw_confusion_cell(canvas, left, top, side, "TN", c.tn, c.tn + c.fp);
  draw_confusion_cell(canvas, left + side, top, side, "FP", c.fp, c.tn + c.fp);
  draw_confusion_cell(canvas, left, top + side, side, "FN", c.fn, c.fn + c.tp);
  draw_confusion_cell(canvas, left + side, top + side, side, "TP", c.tp, c.fn + c.tp);
  cairo_t* cr = canvas.cr();
  cairo_set_source_rgb(cr, 1, 1, 1);  // white gutters keep equally shaded cells apart
  cairo_set_line_width(cr, 2);
  cairo_move_to(cr, left + side, top), cairo_line_to(cr, left + side, top + 2 * side);
  cairo_move_to(cr, left, top + side), cairo_line_to(cr, left + 2 * side, top + side);
  cairo_stroke(cr);
  const char* names[] = {"0 normal", "1 tumour"};
  for (int i = 0; i < 2; ++i) {
    canvas.text(names[i], left - 12, top + side * (i + 0.5), 16, Align::end, Align::middle);
    canvas.text(names[i], left + side * (i + 0.5), top + 2 * side + 12, 16, Align::middle, Align::start);
  }
  canvas.text("True label", left - 110, top + side, 17, Align::middle, Align::end, true, chart::kBlack, true);
  canvas.text("Predicted label", left + side, top + 2 * side + 44, 17, Align::middle, Align::start, true);
  draw_colour_bar(canvas, left + 2 * side + 40, top, 2 * side);
  canvas.write_png(path);
}

void plot_reliability(const std::filesystem::path& path, const std::vector<double>& mean_predicted,
                      const std::vector<double>& fraction_positive, const std::vector<long long>& counts, double ece, int bins) {
  if (mean_predicted.size() != fraction_positive.size() || counts.size() != mean_predicted.size())
    throw std::invalid_argument("plot_reliability: mean_predicted, fraction_positive and counts differ in length");
  chart::Canvas canvas(kPlotWidth, kPlotHeight);
  chart::Axis x{-0.02, 1.02, ""};
  x.tick_labels = false;
  chart::Panel top(canvas, kLeft, kTop, kWidth, 320, x, {-0.02, 1.02, "Fraction of positives (tumour)"});
  top.frame("Reliability diagram");
  top.line({0, 1}, {0, 1}, chart::kGrey, 1.5, true);
  std::vector<double> xs, ys;  // empty bins (NaN) are left out so the curve joins their neighbours
  for (std::size_t i = 0; i < mean_predicted.size(); ++i)
    if (std::isfinite(mean_predicted[i]) && std::isfinite(fraction_positive[i]))
      xs.push_back(mean_predicted[i]), ys.push_back(fraction_positive[i]);
  top.line(xs, ys, chart::palette(0), 2.5);
  for (std::size_t i = 0; i < xs.size(); ++i) top.marker(xs[i], ys[i], chart::palette(0), 5);
  top.legend({{"Model (ECE " + fixed(ece, 3) + ")", chart::palette(0), true, false, true},
              {"Perfectly calibrated", chart::kGrey, true, true}},
             {Place::upper_left, Place::lower_right});

  long long most = counts.empty() ? 1 : std::max(1LL, *std::max_element(counts.begin(), counts.end()));
  chart::Panel below(canvas, kLeft, kTop + 335, kWidth, 120, {-0.02, 1.02, "Mean predicted probability (tumour)"},
                     {0, most * 1.3, "Patches", false, true});
  below.frame("");
  const int n_bins = bins > 0 ? bins : std::max<int>(1, static_cast<int>(counts.size()));
  const bool every_bin = static_cast<int>(counts.size()) == n_bins;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (!every_bin && !std::isfinite(mean_predicted[i])) continue;
    int b = every_bin ? static_cast<int>(i) : std::clamp(static_cast<int>(mean_predicted[i] * n_bins), 0, n_bins - 1);
    double x0 = static_cast<double>(b) / n_bins, x1 = static_cast<double>(b + 1) / n_bins, gap = 0.08 / n_bins;
    below.bar(x0 + gap, x1 - gap, static_cast<double>(counts[i]), {0.651, 0.773, 0.894});
    canvas.text(chart::thousands(counts[i]), below.px((x0 + x1) / 2), below.py(static_cast<double>(counts[i])) - 3, 12,
                Align::middle, Align::end, false, chart::kTickText);
  }
  canvas.write_png(path);
}

std::vector<HistoryRow> read_history_csv(const std::filesystem::path& path) {
  if (!std::filesystem::is_regular_file(path))
    throw InputError(path.string() + " does not exist or is not a file; give the run's history.csv");
  std::vector<HistoryRow> rows;
  try {
    CsvReader<7> reader(path.string());
    reader.read_header(io::ignore_extra_column, "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "val_auc", "lr");
    std::string c[7];
    while (reader.read_row(c[0], c[1], c[2], c[3], c[4], c[5], c[6]))
      rows.push_back(parse_history_row(path, reader.get_file_line(), c));
  } catch (const io::error::missing_column_in_header& e) {
    throw InputError(path.string() + ": the header has no '" + e.column_name +
                     "' column; expected epoch,loss,accuracy,val_loss,val_accuracy,val_auc,lr");
  } catch (const io::error::header_missing&) {
    throw InputError(path.string() + " is empty; expected the header epoch,loss,accuracy,val_loss,val_accuracy,val_auc,lr");
  } catch (const io::error::too_few_columns& e) {
    throw InputError(path.string() + " line " + std::to_string(e.file_line) + ": fewer columns than the header");
  } catch (const io::error::too_many_columns& e) {
    throw InputError(path.string() + " line " + std::to_string(e.file_line) + ": more columns than the header");
  } catch (const io::error::base& e) {
    throw InputError(std::string(e.what()) + " (reading a training history.csv)");  // names the file already
  }
  if (rows.empty()) throw InputError(path.string() + " has a header but no epochs");
  return rows;
}

void plot_history(const std::filesystem::path& path, const std::vector<HistoryRow>& rows) {
  if (rows.empty()) throw InputError("cannot plot " + path.string() + ": the training history has no epochs");
  chart::Canvas canvas(kHistoryWidth, kHistoryHeight);
  canvas.text("Training history", kHistoryWidth / 2.0, 36, 20, Align::middle, Align::end, true);
  HistoryChart chart(canvas, rows);
  chart.loss_panel(90, 210);
  chart.accuracy_panel(350, 210);
  chart.learning_rate_panel(610, 200);
  canvas.write_png(path);
}

std::vector<unsigned char> png_bytes_rgb(const std::uint8_t* rgb, int width, int height) {
  cairo_surface_t* surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
  if (cairo_surface_status(surface) != CAIRO_STATUS_SUCCESS) {
    cairo_surface_destroy(surface);
    throw std::runtime_error("cairo cannot create a " + std::to_string(width) + "x" + std::to_string(height) + " image");
  }
  cairo_surface_flush(surface);
  unsigned char* data = cairo_image_surface_get_data(surface);
  const int stride = cairo_image_surface_get_stride(surface);
  for (int y = 0; y < height; ++y) {
    auto* row = reinterpret_cast<std::uint32_t*>(data + static_cast<std::ptrdiff_t>(y) * stride);
    for (int x = 0; x < width; ++x) {
      const std::uint8_t* p = rgb + (static_cast<std::size_t>(y) * width + x) * 3;
      row[x] = (std::uint32_t{p[0]} << 16) | (std::uint32_t{p[1]} << 8) | p[2];  // RGB24 is native-endian xRGB
    }
  }
  cairo_surface_mark_dirty(surface);
  std::vector<unsigned char> out;
  auto append = [](void* closure, const unsigned char* bytes, unsigned int length) {
    auto* v = static_cast<std::vector<unsigned char>*>(closure);
    v->insert(v->end(), bytes, bytes + length);
    return CAIRO_STATUS_SUCCESS;
  };
  cairo_status_t status = cairo_surface_write_to_png_stream(surface, append, &out);
  cairo_surface_destroy(surface);
  if (status != CAIRO_STATUS_SUCCESS) throw std::runtime_error("cairo cannot encode a PNG");
  return out;
}

}  // namespace histoscan::eval
