#pragma once
// PNG charts of an evaluation and a training run, drawn with cairo from plain numbers
// (no torch), each written atomically. Every writer throws InputError naming the file
// when it cannot be written.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "histoscan/eval/metrics.h"

namespace histoscan::eval {

// Size of every chart but the training history, in pixels.
inline constexpr int kPlotWidth = 800, kPlotHeight = 600;
// The history chart stacks three panels that share the epoch axis.
inline constexpr int kHistoryWidth = 800, kHistoryHeight = 900;

// One line of a chart.
struct Series {
  std::string name;
  std::vector<double> x, y;
};

// One marked point, e.g. an operating point.
struct Marker {
  std::string name;
  double x = 0, y = 0;
};

// ROC curves (name e.g. "best.pt (AUC 0.912)") with the chance diagonal; points[i] is drawn
// in curves[i]'s colour.
void plot_roc(const std::filesystem::path& path, const std::vector<Series>& curves, const std::vector<Marker>& points,
              const std::string& title = "ROC curve");

// Precision (y) against recall (x), with the chance baseline at the positive rate.
void plot_pr(const std::filesystem::path& path, const std::vector<Series>& curves, const std::vector<Marker>& points,
             double positive_rate, const std::string& title = "Precision-recall curve");

// The 2x2 matrix as a grid shaded by row fraction, with counts and row percentages.
void plot_confusion(const std::filesystem::path& path, const Confusion& c, double threshold);

// Calibration: fraction of positives per probability bin against its mean prediction,
// over the diagonal, with each bin's count as bars below. Bins are `bins` equal widths of
// [0, 1] (0: as many as entries). With one entry per bin (analysis.h's Calibration) an
// empty bin has count 0 and NaN mean and fraction; with fewer, entries are placed in bins
// by their mean, as sklearn's calibration_curve leaves empty bins out.
void plot_reliability(const std::filesystem::path& path, const std::vector<double>& mean_predicted,
                      const std::vector<double>& fraction_positive, const std::vector<long long>& counts, double ece,
                      int bins = 0);

// One row of a trainer's history.csv. Metrics may be NaN (e.g. val_auc of a one-class set).
struct HistoryRow {
  int epoch = 0;
  double loss = 0, accuracy = 0, val_loss = 0, val_accuracy = 0, val_auc = 0, lr = 0;
};

// Reads history.csv (epoch,loss,accuracy,val_loss,val_accuracy,val_auc,lr[,seconds...]);
// InputError naming the file and line for a missing column or a bad value.
std::vector<HistoryRow> read_history_csv(const std::filesystem::path& path);

// Three panels over epochs: loss and val_loss; accuracy, val_accuracy and val_auc;
// learning rate on a log scale. InputError when rows is empty.
void plot_history(const std::filesystem::path& path, const std::vector<HistoryRow>& rows);

// An RGB image (row-major, 3 bytes a pixel) as PNG bytes, for embedding in HTML.
std::vector<unsigned char> png_bytes_rgb(const std::uint8_t* rgb, int width, int height);

}  // namespace histoscan::eval
