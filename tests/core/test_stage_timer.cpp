#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "common/test_util.h"
#include "core/error.h"
#include "core/stage_timer.h"
#include "ops/elementwise.h"

using namespace omnirt;

namespace {
const StageTimer::Stage* find_stage(const StageTimer& t, const std::string& name) {
  for (const auto& s : t.stages())
    if (s.name == name) return &s;
  return nullptr;
}
void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }
}  // namespace

// Host times, accumulation of repeated marks, stages missing from a span, pauses: device-free.
TEST(StageTimer, HostTimesAccumulateAndSpansAlign) {
  StageTimer t;
  StageTimer::mark("ignored: no active timer");
  t.activate();
  for (int span = 0; span < 2; ++span) {
    t.start();
    sleep_ms(4);
    StageTimer::mark("a");
    sleep_ms(2);
    StageTimer::mark("b");
    {
      StageTimer::Pause pause;
      StageTimer::mark("paused: not recorded");
    }
    sleep_ms(2);
    StageTimer::mark("b");  // accumulates into b
    if (span == 1) {
      sleep_ms(1);
      StageTimer::mark("c");  // only in the second span
    }
    t.finish();
  }
  t.deactivate();
  StageTimer::mark("ignored: deactivated");
  ASSERT_EQ(t.stages().size(), 3u);
  EXPECT_EQ(t.stages()[0].name, "a");
  EXPECT_EQ(t.stages()[1].name, "b");
  EXPECT_EQ(t.stages()[2].name, "c");
  const StageTimer::Stage* a = find_stage(t, "a");
  const StageTimer::Stage* b = find_stage(t, "b");
  const StageTimer::Stage* c = find_stage(t, "c");
  for (const auto* s : {a, b, c}) {
    ASSERT_EQ(s->host_ms.size(), 2u) << s->name;
    ASSERT_EQ(s->work_items.size(), 2u) << s->name;
  }
  for (int span = 0; span < 2; ++span) {
    EXPECT_GE(a->host_ms[span], 3.9);
    EXPECT_GE(b->host_ms[span], 3.9);     // two marks of ~2 ms each
    EXPECT_EQ(a->work_items[span], 0.0);  // no GPU work queued
  }
  EXPECT_EQ(c->host_ms[0], 0.0);
  EXPECT_GE(c->host_ms[1], 0.9);
  ASSERT_EQ(t.frame_wall_ms().size(), 2u);
  ASSERT_EQ(t.frame_host_queue_ms().size(), 2u);
  for (int span = 0; span < 2; ++span) {
    const double sum = a->host_ms[span] + b->host_ms[span] + c->host_ms[span];
    EXPECT_NEAR(t.frame_host_queue_ms()[span], sum, 0.05);
    EXPECT_GE(t.frame_wall_ms()[span], t.frame_host_queue_ms()[span]);
  }
}

TEST(StageTimer, MarkOutsideASpanIsAClearError) {
  StageTimer t;
  t.activate();
  EXPECT_THROW(StageTimer::mark("x"), Error);
  t.deactivate();
}

// On CUDA: a stage's GPU time covers the kernels queued in it (not the host time, which only
// queues them), and its work items count them.
TEST(StageTimer, CudaEventsTimeTheGpuWorkOfEachStage) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(omnirt::testing::test_seed());
  const Tensor a = omnirt::testing::random_tensor({4096, 4097}, rng).to(Device::CUDA);
  const Tensor b = omnirt::testing::random_tensor({4097}, rng).to(Device::CUDA);
  Tensor out = Tensor::empty(a.shape(), DType::F32, Device::CUDA);
  ops::add(a, b, out);  // warm-up
  StageTimer t;
  ASSERT_TRUE(t.gpu_timed());
  t.activate();
  for (int span = 0; span < 3; ++span) {
    t.start();
    for (int i = 0; i < 50; ++i) ops::add(a, b, out);  // 50 x 134 MB of traffic, ~1.7 ms
    StageTimer::mark("adds");
    ops::add(a, b, out);
    StageTimer::mark("one add");
    t.finish();
  }
  t.deactivate();
  const StageTimer::Stage* adds = find_stage(t, "adds");
  const StageTimer::Stage* one = find_stage(t, "one add");
  ASSERT_TRUE(adds && one);
  ASSERT_EQ(t.frame_gpu_ms().size(), 3u);
  for (int span = 0; span < 3; ++span) {
    EXPECT_EQ(adds->work_items[span], 50.0);
    EXPECT_EQ(one->work_items[span], 1.0);
    EXPECT_GT(adds->gpu_ms[span], 10 * one->gpu_ms[span]);
    EXPECT_GT(one->gpu_ms[span], 0.0);
    EXPECT_NEAR(adds->gpu_ms[span] + one->gpu_ms[span], t.frame_gpu_ms()[span], 1e-3);
    EXPECT_LE(t.frame_gpu_ms()[span], t.frame_wall_ms()[span]);
    // Nothing synchronised between the marks: queuing 50 adds is much faster than running them.
    EXPECT_LT(adds->host_ms[span], adds->gpu_ms[span]);
  }
}
