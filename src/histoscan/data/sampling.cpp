#include "histoscan/data/sampling.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "histoscan/util/error.h"

namespace histoscan::data {

std::vector<std::size_t> sample_per_class(const std::vector<int>& labels, std::size_t per_class, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::size_t> out;
  for (int label : {0, 1}) {
    std::vector<std::size_t> rows;
    for (std::size_t i = 0; i < labels.size(); ++i)
      if (labels[i] == label) rows.push_back(i);
    if (rows.size() < per_class)
      throw InputError("--per-class " + std::to_string(per_class) + " is more than the " + std::to_string(rows.size()) +
                       " patches of class " + std::to_string(label) + "; lower it to at most " + std::to_string(rows.size()));
    std::shuffle(rows.begin(), rows.end(), rng);
    out.insert(out.end(), rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(per_class));
  }
  std::shuffle(out.begin(), out.end(), rng);
  return out;
}

Split split_stratified(const std::vector<std::size_t>& rows, const std::vector<int>& labels, double val_fraction,
                       std::uint64_t seed) {
  if (!(val_fraction > 0 && val_fraction < 1))
    throw InputError("--val-fraction " + format_number(val_fraction) + " must be between 0 and 1 (exclusive)");
  std::mt19937_64 rng(seed);
  std::map<int, std::vector<std::size_t>> by_label;
  for (std::size_t r : rows) by_label[labels[r]].push_back(r);
  Split split;
  for (auto& [label, members] : by_label) {
    std::shuffle(members.begin(), members.end(), rng);
    auto n_valid = static_cast<std::size_t>(std::llround(val_fraction * double(members.size())));
    split.valid.insert(split.valid.end(), members.begin(), members.begin() + static_cast<std::ptrdiff_t>(n_valid));
    split.train.insert(split.train.end(), members.begin() + static_cast<std::ptrdiff_t>(n_valid), members.end());
  }
  std::shuffle(split.train.begin(), split.train.end(), rng);
  std::shuffle(split.valid.begin(), split.valid.end(), rng);
  if (split.train.empty() || split.valid.empty())
    throw InputError("--val-fraction " + format_number(val_fraction) + " leaves " +
                     (split.train.empty() ? "no training" : "no validation") + " patches out of " + std::to_string(rows.size()) +
                     "; use more data or another fraction");
  return split;
}

Split split_by_group(const std::vector<std::size_t>& rows, const std::vector<std::string>& groups, double val_fraction,
                     std::uint64_t seed) {
  if (!(val_fraction > 0 && val_fraction < 1))
    throw InputError("--val-fraction " + format_number(val_fraction) + " must be between 0 and 1 (exclusive)");
  std::map<std::string, std::vector<std::size_t>> by_group;
  for (std::size_t r : rows) by_group[groups[r]].push_back(r);
  if (by_group.size() < 2) throw InputError("--groups: all patches are in one group; a group split needs at least two groups");
  std::vector<const std::string*> order;
  order.reserve(by_group.size());
  for (const auto& [g, members] : by_group) order.push_back(&g);
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  Split split;
  double target = val_fraction * double(rows.size());
  for (std::size_t k = 0; k < order.size(); ++k) {
    auto& members = by_group[*order[k]];
    bool to_valid = double(split.valid.size()) < target && k + 1 < order.size();
    auto& side = to_valid ? split.valid : split.train;
    side.insert(side.end(), members.begin(), members.end());
  }
  std::shuffle(split.train.begin(), split.train.end(), rng);
  std::shuffle(split.valid.begin(), split.valid.end(), rng);
  return split;
}

}  // namespace histoscan::data
