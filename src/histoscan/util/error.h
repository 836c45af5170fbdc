#pragma once
// Errors a user can fix: bad input files, bad flags, outputs that already exist.
// The command line prints what() as one line and exits with status 2; anything else
// that escapes is a bug or an environment failure and exits with status 1.
#include <cstdio>
#include <stdexcept>
#include <string>

namespace histoscan {

struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A number as a user typed it ("0.25", "-1", "1e-05"), for messages about flags.
inline std::string format_number(double value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", value);
  return buf;
}

// Training stopped on request (Ctrl-C) after saving what a resumed run needs; exit 130.
struct Interrupted : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A batch finished, but some of its items failed (each recorded where the message says); exit 3.
struct SomeFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace histoscan
