#pragma once
// Balanced sampling and train/validation splits that never put one id (or one group,
// e.g. a slide) on both sides.
#include <cstdint>
#include <string>
#include <vector>

namespace histoscan::data {

// Rows (indices into labels) of a seeded random sample of `per_class` patches of each of
// class 0 and 1, returned in shuffled order. Throws InputError when a class has fewer.
std::vector<std::size_t> sample_per_class(const std::vector<int>& labels, std::size_t per_class, std::uint64_t seed);

struct Split {
  std::vector<std::size_t> train, valid;
};

// Splits `rows` seeded and stratified by label: round(val_fraction * n_class) of each
// class go to valid. val_fraction must be in (0, 1).
Split split_stratified(const std::vector<std::size_t>& rows, const std::vector<int>& labels, double val_fraction,
                       std::uint64_t seed);

// Splits by group: whole groups go to one side, chosen in seeded random order until valid
// holds at least val_fraction of the rows. groups[r] is row r's group. Throws InputError
// when there are fewer than two groups.
Split split_by_group(const std::vector<std::size_t>& rows, const std::vector<std::string>& groups, double val_fraction,
                     std::uint64_t seed);

}  // namespace histoscan::data
