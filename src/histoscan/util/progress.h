#pragma once
// A Keras-style progress bar on stderr: " 37/150 [=====>......] - ETA: 12s - loss: 0.43".
// Drawn only when stderr is a terminal (or when forced), at most 10 times a second.
#include <chrono>
#include <string>

namespace histoscan {

class ProgressBar {
 public:
  ProgressBar(long long total, std::string label = {});
  // Advances to `done` of total; `extra` follows the bar (e.g. "loss: 0.4321").
  void update(long long done, const std::string& extra = {});
  // Clears the bar line so a summary line can take its place.
  void finish();
  static void set_enabled(bool enabled);  // override the terminal check (tests, --progress)

 private:
  long long total_;
  std::string label_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool drawn_ = false;
};

// "1m 05s" / "12s" / "0.4s" for durations in seconds.
std::string format_seconds(double seconds);

}  // namespace histoscan
