#include "histoscan/train/schedule.h"

#include <algorithm>
#include <cmath>

namespace histoscan::train {

double cosine_lr(double lr, double t, double warmup, double total) {
  if (t < warmup) return lr * (t + 1) / warmup;
  return lr * 0.5 * (1 + std::cos(M_PI * (t - warmup) / std::max(1.0, total - warmup)));
}

double plateau_step(const Plateau& plateau, double val_loss, double& best, int& since) {
  if (val_loss < best - plateau.min_delta) {
    best = val_loss;
    since = 0;
    return 1;
  }
  if (++since < plateau.patience) return 1;
  since = 0;
  return plateau.factor;
}

double ema_decay(double ema, std::int64_t t) {
  const double n = double(t);
  return std::min(ema, (1 + n) / (10 + n));
}

}  // namespace histoscan::train
