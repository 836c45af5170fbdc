#pragma once
// The learning-rate schedules and the weight average's decay, as plain functions of where the
// run is: the loop sets what they return, and tests check them without training anything.
#include <cstdint>

namespace histoscan::train {

// --schedule cosine: the learning rate of step t (0-based, counted over the whole run) of
// `total` steps. It rises linearly over the first `warmup` steps (t + 1) / warmup * lr, then
// falls along a half cosine from lr towards 0 at step `total`.
double cosine_lr(double lr, double t, double warmup, double total);

// Reduce-LR-on-plateau as Keras: a val_loss counts as an improvement when it is below the best
// so far by more than min_delta; after `patience` epochs in a row without one, the learning rate
// is multiplied by `factor` and the count starts again.
struct Plateau {
  int patience = 3;
  double factor = 0.1;
  double min_delta = 1e-4;
};

// Counts one epoch's val_loss into best and since (the run's state, kept in resume.pt) and
// returns the factor the learning rate is multiplied by now: 1, or plateau.factor.
double plateau_step(const Plateau& plateau, double val_loss, double& best, int& since);

// --ema: the decay of the average's update number t (0-based): min(ema, (1 + t) / (10 + t)), so
// the first updates, when the average holds little, move it more.
double ema_decay(double ema, std::int64_t t);

}  // namespace histoscan::train
