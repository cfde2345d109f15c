#include <csignal>

#include "app/cli/loading.h"

namespace hedgelab::cli {

namespace {
std::atomic<bool> g_interrupted{false};
extern "C" void hedgelab_cli_on_interrupt(int) {
  g_interrupted.store(true);
}
}  // namespace

InterruptGuard::InterruptGuard() {
  previous_ = std::signal(SIGINT, hedgelab_cli_on_interrupt);
}
InterruptGuard::~InterruptGuard() {
  std::signal(SIGINT, previous_);
}
const std::atomic<bool>& InterruptGuard::flag() {
  return g_interrupted;
}

}  // namespace hedgelab::cli
