// `omnirt bench <what>`: benchmarks register themselves here, one file each (cmd_bench_<what>.cpp),
// the way subcommands register in command.h, so the vision and LLM benchmarks never share a file.
#pragma once

#include "apps/omnirt/command.h"

namespace omnirt::cli {

struct BenchCommand {
  BenchCommand(std::string name, std::string description, Setup setup);
};
std::vector<RegisteredCommand>& bench_registry();

}  // namespace omnirt::cli
