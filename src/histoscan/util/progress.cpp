#include "histoscan/util/progress.h"

#include <unistd.h>

#include <cstdio>
#include <sstream>

namespace histoscan {

namespace {
int g_enabled = -1;  // -1: decide by isatty

bool enabled() {
  if (g_enabled < 0) g_enabled = ::isatty(STDERR_FILENO) ? 1 : 0;
  return g_enabled == 1;
}
}  // namespace

void ProgressBar::set_enabled(bool e) { g_enabled = e ? 1 : 0; }

ProgressBar::ProgressBar(long long total, std::string label)
    : total_(total), label_(std::move(label)), start_(std::chrono::steady_clock::now()) {}

std::string format_seconds(double s) {
  char buf[32];
  if (s < 10) std::snprintf(buf, sizeof buf, "%.1fs", s);
  else if (s < 60) std::snprintf(buf, sizeof buf, "%.0fs", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%dm %02ds", int(s) / 60, int(s) % 60);
  else std::snprintf(buf, sizeof buf, "%dh %02dm", int(s) / 3600, (int(s) % 3600) / 60);
  return buf;
}

void ProgressBar::update(long long done, const std::string& extra) {
  if (!enabled()) return;
  auto now = std::chrono::steady_clock::now();
  if (drawn_ && done < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  drawn_ = true;
  const int width = 30;
  double frac = total_ > 0 ? double(done) / double(total_) : 1.0;
  int filled = int(frac * width);
  std::ostringstream line;
  line << '\r' << label_;
  std::string count = std::to_string(total_);
  std::string d = std::to_string(done);
  line << std::string(count.size() > d.size() ? count.size() - d.size() : 0, ' ') << d << '/' << count << " [";
  for (int i = 0; i < width; ++i) line << (i < filled ? '=' : (i == filled && done < total_ ? '>' : '.'));
  line << ']';
  double elapsed = std::chrono::duration<double>(now - start_).count();
  if (done < total_ && done > 0) line << " - ETA: " << format_seconds(elapsed / double(done) * double(total_ - done));
  else line << " - " << format_seconds(elapsed);
  if (!extra.empty()) line << " - " << extra;
  line << "\x1b[K";
  std::fputs(line.str().c_str(), stderr);
  std::fflush(stderr);
}

void ProgressBar::finish() {
  if (!enabled() || !drawn_) return;
  std::fputs("\r\x1b[K", stderr);
  std::fflush(stderr);
}

}  // namespace histoscan
