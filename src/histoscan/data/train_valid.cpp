// Training and validation patches that never share an id (train_valid.h).
#include "histoscan/data/train_valid.h"

#include <unordered_set>

#include "histoscan/data/labels_csv.h"
#include "histoscan/data/sampling.h"
#include "histoscan/util/error.h"
#include "histoscan/util/log.h"

namespace histoscan::data {

namespace {

// Patches [from, from + count) of `store`.
PatchStore slice(const PatchStore& store, std::size_t from, std::size_t count) {
  PatchStore s;
  s.ids.assign(store.ids.begin() + from, store.ids.begin() + from + count);
  s.labels.assign(store.labels.begin() + from, store.labels.begin() + from + count);
  s.pixels.assign(store.pixels.begin() + from * kPatchBytes, store.pixels.begin() + (from + count) * kPatchBytes);
  return s;
}

TrainValid load_with_valid_data(const PatchIndex& index, const std::vector<std::size_t>& rows, const TrainValidOptions& o) {
  TrainValid out;
  auto vindex = index_source(o.valid, o.valid_source);
  std::unordered_set<std::string> train_ids;
  for (std::size_t r : rows) train_ids.insert(index.entries[r].id);
  for (const auto& e : vindex.entries) out.shared_ids += train_ids.count(e.id);
  if (out.shared_ids)
    log::warn(std::to_string(out.shared_ids) + " ids of --valid " + o.valid +
              " are also training patches; validation will flatter the model");
  log::info("training on " + std::to_string(rows.size()) + " patches of " + index.describe() + ", validating on " +
            std::to_string(vindex.entries.size()) + " of " + vindex.describe());
  out.train = load_patches(index, rows, o.load, &out.skipped);
  out.valid = load_all_patches(vindex, o.load, &out.skipped);
  return out;
}

Split split_rows(const PatchIndex& index, const std::vector<std::size_t>& rows, const TrainValidOptions& o) {
  if (o.groups.empty()) return split_stratified(rows, index.labels(), o.val_fraction, o.seed);
  auto groups_by_id = read_groups_csv(o.groups);
  std::vector<std::string> groups(index.entries.size());
  for (std::size_t r : rows) {
    auto it = groups_by_id.find(index.entries[r].id);
    if (it == groups_by_id.end())
      throw InputError("--groups " + o.groups + ": id " + index.entries[r].id + " has no group; give every patch a group");
    groups[r] = it->second;
  }
  return split_by_group(rows, groups, o.val_fraction, o.seed);
}

}  // namespace

TrainValid load_train_valid(const PatchIndex& index, const std::vector<std::size_t>& rows, const TrainValidOptions& o) {
  if (!o.valid.empty()) return load_with_valid_data(index, rows, o);
  const Split split = split_rows(index, rows, o);
  log::info("training on " + std::to_string(split.train.size()) + " and validating on " + std::to_string(split.valid.size()) +
            " patches of " + index.describe() + (o.groups.empty() ? " (stratified split)" : " (split by group)"));
  std::vector<std::size_t> all = split.train;
  all.insert(all.end(), split.valid.begin(), split.valid.end());
  TrainValid out;
  auto store = load_patches(index, all, o.load, &out.skipped);  // one decode pass over both sides
  std::unordered_set<std::string> bad;                          // skipped images shrink the side they came from
  for (const auto& s : out.skipped) bad.insert(s.id);
  std::size_t train_kept = 0;
  for (std::size_t r : split.train) train_kept += bad.count(index.entries[r].id) == 0;
  out.train = slice(store, 0, train_kept);
  out.valid = slice(store, train_kept, store.size() - train_kept);
  return out;
}

}  // namespace histoscan::data
