#include "core/snapshot/probe_stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace hedgelab::snapshot {

namespace {
double row_sum(const Grid& g, int64_t t) {
  double s = 0.0;
  for (int64_t j = 0; j <= t && j < g.cols; ++j)
    s += std::max(0.0f, g.at(t, j));
  return s;
}

std::vector<double> ranks(const std::vector<float>& v) {
  std::vector<size_t> order(v.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j + 1 < order.size() && v[order[j + 1]] == v[order[i]])
      ++j;
    const double average = 0.5 * static_cast<double>(i + j) + 1.0;
    for (size_t k = i; k <= j; ++k)
      r[order[k]] = average;
    i = j + 1;
  }
  return r;
}
}  // namespace

double mean_row_entropy(const Grid& p) {
  if (p.rows == 0) return 0.0;
  double total = 0.0;
  for (int64_t t = 0; t < p.rows; ++t) {
    const double z = row_sum(p, t);
    if (z <= 0.0) continue;
    double h = 0.0;
    for (int64_t s = 0; s <= t && s < p.cols; ++s) {
      const double x = std::max(0.0f, p.at(t, s)) / z;
      if (x > 0.0) h -= x * std::log(x);
    }
    total += h;
  }
  return total / static_cast<double>(p.rows);
}

double mean_row_kl(const Grid& p, const Grid& q) {
  if (p.rows == 0 || p.rows != q.rows || p.cols != q.cols) return 0.0;
  double total = 0.0;
  for (int64_t t = 0; t < p.rows; ++t) {
    const double zp = row_sum(p, t), zq = row_sum(q, t);
    if (zp <= 0.0) continue;
    double kl = 0.0;
    for (int64_t s = 0; s <= t && s < p.cols; ++s) {
      const double a = std::max(0.0f, p.at(t, s)) / zp;
      if (a <= 0.0) continue;
      const double b = zq > 0.0 ? std::max(0.0f, q.at(t, s)) / zq : 0.0;
      kl += a * (std::log(a) - std::log(std::max(b, 1e-12)));
    }
    total += kl;
  }
  return total / static_cast<double>(p.rows);
}

double spearman(const std::vector<float>& a, const std::vector<float>& b) {
  const size_t n = std::min(a.size(), b.size());
  if (n < 2) return 0.0;
  const auto ra = ranks(std::vector<float>(a.begin(), a.begin() + static_cast<long>(n)));
  const auto rb = ranks(std::vector<float>(b.begin(), b.begin() + static_cast<long>(n)));
  const double mean = 0.5 * static_cast<double>(n + 1);
  double sab = 0.0, saa = 0.0, sbb = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const double x = ra[i] - mean, y = rb[i] - mean;
    sab += x * y;
    saa += x * x;
    sbb += y * y;
  }
  if (saa <= 0.0 || sbb <= 0.0) return 0.0;
  return sab / std::sqrt(saa * sbb);
}

std::vector<float> lower_triangle(const Grid& g) {
  std::vector<float> out;
  out.reserve(static_cast<size_t>(g.rows * (g.rows + 1) / 2));
  for (int64_t t = 0; t < g.rows; ++t)
    for (int64_t s = 0; s <= t && s < g.cols; ++s)
      out.push_back(g.at(t, s));
  return out;
}

}  // namespace hedgelab::snapshot
