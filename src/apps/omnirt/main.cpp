// omnirt: the command-line front end. Subcommands register themselves (see command.h).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <map>

#include "core/version.h"
#include "apps/omnirt/command.h"
#include "core/device.h"
#include "core/error.h"

namespace omnirt::cli {
std::vector<RegisteredCommand>& registry() {
  static std::vector<RegisteredCommand> r;
  return r;
}
Command::Command(std::string name, std::string description, Setup setup) {
  registry().push_back({std::move(name), std::move(description), std::move(setup)});
}
}  // namespace omnirt::cli

static std::string version_string() {
  std::string s = std::string("omnirt ") + omnirt::version() + " (commit " + omnirt::git_commit() + ", ";
#ifdef OMNIRT_WITH_CUDA
  s += "CUDA backend built";
#else
  s += "CPU only build";
#endif
  return s + ")";
}

int main(int argc, char** argv) {
  CLI::App app{"OmniDrive-RT: an inference runtime for the OmniDrive vision-language driving model"};
  app.set_version_flag("--version", version_string());
  app.require_subcommand(1);
  auto& reg = omnirt::cli::registry();
  std::sort(reg.begin(), reg.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::map<CLI::App*, std::function<int()>> runners;
  for (auto& cmd : reg) {
    CLI::App* sub = app.add_subcommand(cmd.name, cmd.description);
    runners[sub] = cmd.setup(*sub);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, run] : runners)
      if (sub->parsed()) return run();
  } catch (const omnirt::Error& e) {
    std::fprintf(stderr, "omnirt: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "omnirt: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}
