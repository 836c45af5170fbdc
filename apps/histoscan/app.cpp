// The command line's subcommands, flags and exit statuses (app.h).
#include "app.h"

#include <iostream>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "histoscan/data/image_io.h"
#include "histoscan/util/error.h"
#include "histoscan/util/log.h"

namespace histoscan::cli {

namespace {

std::string current_command;

// A word as a POSIX shell reads it back: bare when it holds only safe characters, else in single
// quotes (a quote inside as '\'').
std::string shell_word(const std::string& w) {
  if (!w.empty() &&
      w.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=.,/:@%") == std::string::npos)
    return w;
  std::string out = "'";
  for (char c : w) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace

std::string command_line() { return current_command; }

int run_command_line(const std::vector<std::string>& args, std::string* error) {
  current_command = "histoscan";
  for (std::size_t i = 1; i < args.size(); ++i) current_command += " " + shell_word(args[i]);
  struct Forget {
    ~Forget() { current_command.clear(); }
  } forget;
  CLI::App app{"histoscan: train, evaluate and apply CNNs that find metastatic cancer in 96x96 H&E patches"};
  app.require_subcommand(1);
  app.fallthrough();  // -q/-v work after the subcommand too
  app.set_version_flag("--version", std::string("histoscan ") + HISTOSCAN_VERSION);
  // CLI11's own parse errors (an unknown flag, flags that exclude each other, a bad number):
  // one line with the prefix of every other error.
  app.failure_message(
      [](const CLI::App*, const CLI::Error& e) { return std::string("histoscan: error: ") + e.what() + " (see --help)\n"; });
  bool quiet = false, verbose = false;
  app.add_flag("-q,--quiet", quiet, "only warnings and errors on stderr");
  app.add_flag("-v,--verbose", verbose, "debug messages on stderr");
  app.parse_complete_callback([&] {
    using histoscan::log::Level;
    histoscan::log::set_level(quiet ? Level::warn : verbose ? Level::debug : Level::info);
  });
  data::quiet_image_library();
  add_inspect(app);
  add_pack(app);
  add_synth(app);
  add_models(app);
  add_train(app);
  add_evaluate(app);
  add_metrics(app);
  add_bench(app);
  add_predict(app);
  add_scan(app);
  add_synth_slide(app);
  add_export(app);

  auto fail = [&](int status, const std::string& prefix, const std::string& message) {
    if (error) *error = message;
    else std::cerr << prefix << message << '\n';
    return status;
  };
  std::vector<const char*> argv;
  argv.reserve(args.size());
  for (const auto& a : args) argv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    if (error) *error = std::string(e.what()) + " (see --help)";
    else app.exit(e);
    return kExitInputError;
  } catch (const Interrupted& e) {
    return fail(kExitInterrupted, "histoscan: interrupted: ", e.what());
  } catch (const SomeFailed& e) {
    return fail(kExitSomeFailed, "histoscan: ", e.what());
  } catch (const InputError& e) {
    return fail(kExitInputError, "histoscan: error: ", e.what());
  } catch (const std::exception& e) {
    return fail(kExitFailed, "histoscan: failed: ", e.what());
  }
  return kExitOk;
}

}  // namespace histoscan::cli
