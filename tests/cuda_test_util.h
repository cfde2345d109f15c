// The comparison every cuda-labelled suite makes (QTest-side; tensor_test_util.h stays QTest-free): got is
// finite and within `tol` of the float64 reference in ‖got − ref‖∞ / ‖ref‖∞, logged with its bound so the
// GPU run's log carries each measured error.
#pragma once

#include <ATen/ATen.h>

#include <QTest>
#include <string>

#include "tests/tensor_test_util.h"

namespace hedgelab::testing {

inline void expect_close(const std::string& tag, const char* what, const at::Tensor& got,
                         const at::Tensor& ref, double tol) {
  QVERIFY2(at::isfinite(got).all().item<bool>(), (tag + " " + what + ": not finite").c_str());
  const double e = relative_error(got.detach().to(at::kDouble).cpu(), ref);
  qInfo("%s %-5s rel err %.2e (bound %.0e)", tag.c_str(), what, e, tol);
  QVERIFY2(e < tol, (tag + " " + what + ": " + std::to_string(e)).c_str());
}

}  // namespace hedgelab::testing
