#pragma once
// The histoscan command line as a function: the `histoscan` binary's main() and the Python
// module's histoscan.train() run the same commands through it.
#include <string>
#include <vector>

namespace histoscan::cli {

// Exit statuses, as the README documents them.
inline constexpr int kExitOk = 0, kExitFailed = 1, kExitInputError = 2, kExitSomeFailed = 3, kExitInterrupted = 130;

// Parses args (args[0] is the program's name) and runs the subcommand they name. Returns the
// exit status. Help and CLI11's own messages go to stdout/stderr as the binary prints them; the
// one-line error of a failed command goes to stderr, or into *error (without the "histoscan:"
// prefix) when error is given.
int run_command_line(const std::vector<std::string>& args, std::string* error = nullptr);

// The command run_command_line is running, as a shell would take it back ("histoscan train DATA
// --out RUN"): training keeps it in config.json and the checkpoint's metadata, so a model says
// how it was made. Empty outside run_command_line.
std::string command_line();

}  // namespace histoscan::cli
