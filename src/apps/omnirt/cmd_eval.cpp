// `omnirt eval --gt GT.json --pred PRED.json [--json OUT] [--metrics det,plan,lane]`:
// nuScenes detection (mAP/NDS), OmniDrive planning (L2/collision/boundary) and OpenLane-V2 lane
// DET_l with the original evaluators' semantics. Formats: docs/eval_format.md.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "apps/omnirt/command.h"
#include "core/error.h"
#include "eval/report.h"

namespace {

struct EvalArgs {
  std::string gt, pred, json_out, metrics = "det,plan,lane";
  bool no_filter = false;
};

omnirt::eval::EvalOptions parse_metrics(const std::string& list) {
  omnirt::eval::EvalOptions opt;
  opt.detection = opt.planning = opt.lanes = false;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item == "det")
      opt.detection = true;
    else if (item == "plan")
      opt.planning = true;
    else if (item == "lane")
      opt.lanes = true;
    else if (!item.empty())
      OMNIRT_FAIL("--metrics: unknown metric '", item, "' (expected det, plan, lane)");
  }
  OMNIRT_CHECK(opt.detection || opt.planning || opt.lanes, "--metrics: nothing selected");
  return opt;
}

omnirt::cli::Command eval_cmd(
    "eval", "Evaluate predictions: nuScenes mAP/NDS, planning L2/collision/boundary, lane DET_l",
    [](CLI::App& sub) {
      auto args = std::make_shared<EvalArgs>();
      sub.add_option("--gt", args->gt, "Ground-truth JSON (docs/eval_format.md)")->required();
      sub.add_option("--pred", args->pred, "Predictions JSON ('results' or 'frames' layout) or an `omnirt run` output folder")
          ->required();
      sub.add_option("--json", args->json_out, "Also write the metrics as JSON to this file");
      sub.add_option("--metrics", args->metrics, "Comma-separated subset of det,plan,lane")
          ->capture_default_str();
      sub.add_flag("--no-filter", args->no_filter,
                   "Detection: skip the devkit's class-range / num_pts / bike-rack filter");
      return [args]() {
        omnirt::eval::EvalOptions opt = parse_metrics(args->metrics);
        opt.filter_boxes = !args->no_filter;
        const auto gt = omnirt::eval::load_ground_truth(args->gt);
        const auto pred = omnirt::eval::load_predictions(args->pred, gt);
        const auto report = omnirt::eval::run_evaluation(gt, pred, opt);
        std::fputs(omnirt::eval::format_report(report).c_str(), stdout);
        if (!args->json_out.empty()) {
          std::ofstream out(args->json_out);
          OMNIRT_CHECK(out.good(), "--json: cannot write '", args->json_out, "'");
          // nlohmann writes the shortest text that reads back to the same double.
          out << omnirt::eval::report_to_json(report).dump(2) << "\n";
          OMNIRT_CHECK(out.good(), "--json: writing '", args->json_out, "' failed");
        }
        return 0;
      };
    });

}  // namespace
