// histoscan: find metastatic cancer in histopathology patches.
#include <iostream>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "histoscan/data/image_io.h"
#include "histoscan/util/error.h"
#include "histoscan/util/log.h"
#include "histoscan/util/sysinfo.h"

int main(int argc, char** argv) {
  histoscan::reuse_freed_memory();  // before the first large allocation
  CLI::App app{"histoscan: train, evaluate and apply CNNs that find metastatic cancer in 96x96 H&E patches"};
  app.require_subcommand(1);
  app.fallthrough();  // -q/-v work after the subcommand too
  app.set_version_flag("--version", std::string("histoscan ") + HISTOSCAN_VERSION);
  // CLI11's own parse errors (an unknown flag, flags that exclude each other, a bad number):
  // one line with the prefix of every other error.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("histoscan: error: ") + e.what() + " (see --help)\n";
  });
  bool quiet = false, verbose = false;
  app.add_flag("-q,--quiet", quiet, "only warnings and errors on stderr");
  app.add_flag("-v,--verbose", verbose, "debug messages on stderr");
  app.parse_complete_callback([&] {
    using histoscan::log::Level;
    histoscan::log::set_level(quiet ? Level::warn : verbose ? Level::debug : Level::info);
  });
  histoscan::data::quiet_image_library();
  histoscan::cli::add_inspect(app);
  histoscan::cli::add_pack(app);
  histoscan::cli::add_synth(app);
  histoscan::cli::add_models(app);
  histoscan::cli::add_train(app);
  histoscan::cli::add_evaluate(app);
  histoscan::cli::add_metrics(app);
  histoscan::cli::add_bench(app);
  histoscan::cli::add_predict(app);
  histoscan::cli::add_scan(app);
  histoscan::cli::add_synth_slide(app);
  histoscan::cli::add_export(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  } catch (const histoscan::Interrupted& e) {
    std::cerr << "histoscan: interrupted: " << e.what() << '\n';
    return 130;
  } catch (const histoscan::SomeFailed& e) {
    std::cerr << "histoscan: " << e.what() << '\n';
    return 3;
  } catch (const histoscan::InputError& e) {
    std::cerr << "histoscan: error: " << e.what() << '\n';
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "histoscan: failed: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
