// `omnirt bench`: the parent of the registered benchmarks (see bench.h).
#include <algorithm>
#include <map>

#include "apps/omnirt/bench.h"

namespace omnirt::cli {

std::vector<RegisteredCommand>& bench_registry() {
  static std::vector<RegisteredCommand> r;
  return r;
}
BenchCommand::BenchCommand(std::string name, std::string description, Setup setup) {
  bench_registry().push_back({std::move(name), std::move(description), std::move(setup)});
}

namespace {
Command bench_cmd("bench", "Latency benchmarks (p50/p90 over runs, table + JSON)", [](CLI::App& sub) {
  sub.require_subcommand(1);
  auto& reg = bench_registry();
  std::sort(reg.begin(), reg.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  auto runners = std::make_shared<std::map<CLI::App*, std::function<int()>>>();
  for (auto& b : reg) {
    CLI::App* s = sub.add_subcommand(b.name, b.description);
    (*runners)[s] = b.setup(*s);
  }
  return [runners]() {
    for (auto& [s, run] : *runners)
      if (s->parsed()) return run();
    return 1;
  };
});
}  // namespace

}  // namespace omnirt::cli
