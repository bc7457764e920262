// Subcommands of the `omnirt` CLI. Each lives in its own cmd_<name>.cpp and registers itself
// with a static Command object, so adding a subcommand never touches main.cpp.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace omnirt::cli {

// `setup` adds the subcommand's options to `sub` and returns the function to run (exit code).
using Setup = std::function<std::function<int()>(CLI::App& sub)>;

struct Command {
  Command(std::string name, std::string description, Setup setup);
};

struct RegisteredCommand {
  std::string name;
  std::string description;
  Setup setup;
};
std::vector<RegisteredCommand>& registry();

}  // namespace omnirt::cli
