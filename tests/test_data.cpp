// Reading patches and labels: the formats users bring, and the bad input they bring too.
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <set>
#include <vector>

#include <hdf5.h>
#include <malloc.h>
#include <sys/resource.h>
#include <tiffio.h>
#include <unistd.h>

#include <opencv2/imgcodecs.hpp>

#include "histoscan/data/hdf5_io.h"
#include "histoscan/data/image_io.h"
#include "histoscan/data/labels_csv.h"
#include "histoscan/data/sampling.h"
#include "histoscan/data/source.h"
#include "histoscan/data/store.h"
#include "histoscan/data/synth.h"
#include "histoscan/data/train_valid.h"
#include "histoscan/util/error.h"
#include "histoscan/util/sysinfo.h"
#include "test_util.h"

using namespace histoscan;
using namespace histoscan::data;
using histoscan::test::error_of;
using histoscan::test::TempDir;
using histoscan::test::write_text;

namespace {

std::vector<std::uint8_t> patch(bool tumour, std::uint64_t seed) {
  std::vector<std::uint8_t> p(kPatchBytes);
  synth_patch(tumour, seed, p.data());
  return p;
}

}  // namespace

TEST(LabelsCsv, ReadsBomCrlfQuotesAndExtraColumns) {
  TempDir dir;
  write_text(dir / "l.csv", "\xEF\xBB\xBFslide,\"id\",label,note\r\ns1,\"abc\",1,\"x, y\"\r\ns2,def,0,z\r\n");
  auto labels = read_labels_csv(dir / "l.csv");
  ASSERT_EQ(labels.size(), 2u);
  EXPECT_EQ(labels.at("abc"), 1);
  EXPECT_EQ(labels.at("def"), 0);
}

TEST(LabelsCsv, HeaderOnlyIsEmpty) {
  TempDir dir;
  write_text(dir / "l.csv", "id,label\n");
  EXPECT_TRUE(read_labels_csv(dir / "l.csv").empty());
}

TEST(LabelsCsv, RefusesMissingColumnBadLabelAndConflictingDuplicates) {
  TempDir dir;
  write_text(dir / "a.csv", "name,label\nabc,1\n");
  EXPECT_NE(error_of([&] { read_labels_csv(dir / "a.csv"); }).find("no 'id' column"), std::string::npos);
  write_text(dir / "b.csv", "id,label\nabc,1\ndef,2\n");
  std::string bad = error_of([&] { read_labels_csv(dir / "b.csv"); });
  EXPECT_NE(bad.find("line 3"), std::string::npos) << bad;
  EXPECT_NE(bad.find("'2'"), std::string::npos) << bad;
  write_text(dir / "c.csv", "id,label\nabc,yes\n");
  EXPECT_NE(error_of([&] { read_labels_csv(dir / "c.csv"); }).find("not 0 or 1"), std::string::npos);
  write_text(dir / "d.csv", "id,label\nabc,1\nabc,0\n");
  EXPECT_NE(error_of([&] { read_labels_csv(dir / "d.csv"); }).find("different label"), std::string::npos);
  write_text(dir / "e.csv", "id,label\nabc,1\nabc,1\n");
  EXPECT_EQ(read_labels_csv(dir / "e.csv").size(), 1u);
}

TEST(ImageIo, TiffRoundTripIsExact) {
  TempDir dir;
  auto p = patch(true, 1);
  write_patch(dir / "a.tif", p.data());
  std::vector<std::uint8_t> back(kPatchBytes);
  decode_patch(dir / "a.tif", back.data());
  EXPECT_EQ(p, back);
}

TEST(ImageIo, ConvertsGrayscaleAndRgba) {
  TempDir dir;
  cv::Mat gray(96, 96, CV_8UC1, cv::Scalar(77));
  cv::imwrite((dir / "g.png").string(), gray);
  cv::Mat bgra(96, 96, CV_8UC4, cv::Scalar(10, 20, 30, 255));  // B, G, R, A
  cv::imwrite((dir / "a.png").string(), bgra);
  std::vector<std::uint8_t> out(kPatchBytes);
  decode_patch(dir / "g.png", out.data());
  EXPECT_EQ(out[0], 77);
  EXPECT_EQ(out[2], 77);
  decode_patch(dir / "a.png", out.data());
  EXPECT_EQ(out[0], 30);  // R first
  EXPECT_EQ(out[2], 10);
}

TEST(ImageIo, RefusesBadFilesWithTheirName) {
  TempDir dir;
  std::vector<std::uint8_t> out(kPatchBytes);
  write_text(dir / "empty.tif", "");
  EXPECT_NE(error_of([&] { decode_patch(dir / "empty.tif", out.data()); }).find("empty.tif: the file is empty"),
            std::string::npos);
  write_text(dir / "text.tif", "this is not an image");
  EXPECT_NE(error_of([&] { decode_patch(dir / "text.tif", out.data()); }).find("not a readable image"), std::string::npos);
  auto p = patch(false, 2);
  write_patch(dir / "full.tif", p.data());
  std::string bytes = test::read_text(dir / "full.tif");
  write_text(dir / "cut.tif", bytes.substr(0, bytes.size() / 3));
  EXPECT_NE(error_of([&] { decode_patch(dir / "cut.tif", out.data()); }).find("cut.tif"), std::string::npos);
  cv::Mat big(50, 64, CV_8UC3, cv::Scalar(1, 2, 3));
  cv::imwrite((dir / "small.png").string(), big);
  EXPECT_NE(error_of([&] { decode_patch(dir / "small.png", out.data()); }).find("64x50, expected 96x96; pass --resize"),
            std::string::npos);
  DecodeOptions resize;
  resize.resize = true;
  EXPECT_NO_THROW(decode_patch(dir / "small.png", out.data(), resize));
  cv::Mat deep(96, 96, CV_16UC3, cv::Scalar(1000, 2000, 3000));
  cv::imwrite((dir / "deep.png").string(), deep);
  EXPECT_NE(error_of([&] { decode_patch(dir / "deep.png", out.data()); }).find("16-bit"), std::string::npos);
  fs::create_directories(dir / "folder.tif");
  EXPECT_NE(error_of([&] { decode_patch(dir / "folder.tif", out.data()); }).find("is a folder"), std::string::npos);
}

TEST(Source, ClassFoldersAndKaggleLayout) {
  TempDir dir;
  auto p = patch(false, 3);
  write_patch(dir / "cf/0/a.png", (fs::create_directories(dir / "cf/0"), p.data()));
  fs::create_directories(dir / "cf/1");
  write_patch(dir / "cf/1/b.jpg", p.data());
  auto cf = index_source(dir / "cf");
  EXPECT_EQ(cf.kind, SourceKind::class_folders);
  ASSERT_EQ(cf.entries.size(), 2u);
  EXPECT_EQ(cf.entries[0].id, "a");
  EXPECT_EQ(cf.entries[0].label, 0);
  EXPECT_EQ(cf.entries[1].label, 1);

  fs::create_directories(dir / "kg/train");
  write_patch(dir / "kg/train/x1.tif", p.data());
  write_patch(dir / "kg/train/x2.tif", p.data());
  write_text(dir / "kg/train_labels.csv", "id,label\nx1,1\nx2,0\n");
  for (const fs::path& data : {dir / "kg", dir / "kg/train"}) {
    auto kg = index_source(data);
    EXPECT_EQ(kg.kind, SourceKind::kaggle);
    EXPECT_EQ(kg.count(1), 1u);
    EXPECT_EQ(kg.count(0), 1u);
  }
}

TEST(Source, UnmatchedFilesAndLabelsAreErrorsUnlessAllowed) {
  TempDir dir;
  auto p = patch(false, 4);
  fs::create_directories(dir / "kg");
  write_patch(dir / "kg/x1.tif", p.data());
  write_patch(dir / "kg/x2.tif", p.data());
  write_text(dir / "kg/train_labels.csv", "id,label\nx1,1\nx3,0\n");
  std::string e = error_of([&] { index_source(dir / "kg"); });
  EXPECT_NE(e.find("1 files without labels and 1 labels without files"), std::string::npos) << e;
  SourceOptions allow;
  allow.allow_missing = true;
  auto idx = index_source(dir / "kg", allow);
  ASSERT_EQ(idx.entries.size(), 1u);
  EXPECT_EQ(idx.entries[0].id, "x1");
  SourceOptions unlabeled;
  unlabeled.require_labels = false;
  EXPECT_EQ(index_source(dir / "kg", unlabeled).entries.size(), 2u);
}

TEST(Source, RefusesEmptyFolderDuplicateIdsAndUnlabelledTraining) {
  TempDir dir;
  fs::create_directories(dir / "empty");
  EXPECT_NE(error_of([&] { index_source(dir / "empty"); }).find("no images found"), std::string::npos);
  auto p = patch(false, 5);
  fs::create_directories(dir / "dup/0");
  fs::create_directories(dir / "dup/1");
  write_patch(dir / "dup/0/a.png", p.data());
  write_patch(dir / "dup/1/a.tif", p.data());
  EXPECT_NE(error_of([&] { index_source(dir / "dup"); }).find("duplicate id a"), std::string::npos);
  fs::create_directories(dir / "flat");
  write_patch(dir / "flat/a.tif", p.data());
  EXPECT_NE(error_of([&] { index_source(dir / "flat"); }).find("no labels found"), std::string::npos);
  EXPECT_NE(error_of([&] { index_source(dir / "missing"); }).find("does not exist"), std::string::npos);
}

TEST(Sampling, PerClassIsBalancedSeededAndBounded) {
  std::vector<int> labels;
  labels.reserve(100);
  for (int i = 0; i < 100; ++i) labels.push_back(i % 3 == 0);
  auto a = sample_per_class(labels, 20, 1), b = sample_per_class(labels, 20, 1), c = sample_per_class(labels, 20, 2);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(a.size(), 40u);
  EXPECT_EQ(std::count_if(a.begin(), a.end(), [&](std::size_t r) { return labels[r] == 1; }), 20);
  EXPECT_EQ(std::set<std::size_t>(a.begin(), a.end()).size(), 40u);
  EXPECT_NE(error_of([&] { sample_per_class(labels, 40, 1); }).find("--per-class 40 is more than the 34"), std::string::npos);
}

TEST(Sampling, SplitNeverPutsAnIdOnBothSides) {
  std::vector<int> labels;
  std::vector<std::size_t> rows;
  for (std::size_t i = 0; i < 1000; ++i) {
    labels.push_back(i % 4 == 0);
    rows.push_back(i);
  }
  auto s = split_stratified(rows, labels, 0.25, 42);
  std::set<std::size_t> train(s.train.begin(), s.train.end()), valid(s.valid.begin(), s.valid.end());
  EXPECT_EQ(train.size() + valid.size(), 1000u);
  for (std::size_t r : valid) EXPECT_EQ(train.count(r), 0u);
  EXPECT_EQ(valid.size(), 251u);  // a quarter of each class, rounded: 188 + 63
  EXPECT_EQ(std::count_if(s.valid.begin(), s.valid.end(), [&](std::size_t r) { return labels[r] == 1; }), 63);
  EXPECT_NE(error_of([&] { split_stratified(rows, labels, 1.0, 1); }).find("--val-fraction"), std::string::npos);
}

TEST(Sampling, GroupSplitKeepsEachGroupOnOneSide) {
  std::vector<std::size_t> rows;
  std::vector<std::string> groups;
  for (std::size_t i = 0; i < 600; ++i) {
    rows.push_back(i);
    groups.push_back("slide" + std::to_string(i % 12));
  }
  auto s = split_by_group(rows, groups, 0.25, 3);
  std::set<std::string> train_groups, valid_groups;
  for (auto r : s.train) train_groups.insert(groups[r]);
  for (auto r : s.valid) valid_groups.insert(groups[r]);
  for (const auto& g : valid_groups) EXPECT_EQ(train_groups.count(g), 0u) << g;
  EXPECT_GE(s.valid.size(), 150u);
  EXPECT_EQ(s.train.size() + s.valid.size(), 600u);
}

// What train validates on: never a training id (split by label), never a training group (split
// by group), an unreadable patch left out of its own side only, and --valid ids shared with
// the training rows counted.
TEST(TrainValid, SplitsNeverShareAnIdOrAGroupAndSkippedPatchesShrinkTheirOwnSide) {
  TempDir dir;
  std::string groups = "id,group\n";
  for (int i = 0; i < 40; ++i) {
    const int label = i % 2;
    const std::string id = "p" + std::to_string(i);
    fs::create_directories(dir / "cf" / std::to_string(label));
    write_patch(dir / "cf" / std::to_string(label) / (id + ".png"), patch(label, 100 + i).data());
    groups += id + ",slide" + std::to_string(i % 8) + "\n";
  }
  write_text(dir / "groups.csv", groups);
  const auto index = index_source(dir / "cf");
  std::vector<std::size_t> rows(index.entries.size());
  for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = i;
  auto ids_of = [](const PatchStore& s) { return std::set<std::string>(s.ids.begin(), s.ids.end()); };
  auto group_of = [](const std::string& id) { return std::stoi(id.substr(1)) % 8; };

  TrainValidOptions o;
  o.val_fraction = 0.25;
  o.seed = 4;
  auto by_label = load_train_valid(index, rows, o);
  EXPECT_EQ(by_label.train.size(), 30u);
  EXPECT_EQ(by_label.valid.size(), 10u);
  for (const auto& id : ids_of(by_label.valid)) EXPECT_EQ(ids_of(by_label.train).count(id), 0u) << id;
  EXPECT_EQ(by_label.train.pixels.size(), 30 * kPatchBytes);

  o.groups = (dir / "groups.csv").string();
  auto by_group = load_train_valid(index, rows, o);
  std::set<int> train_groups;
  for (const auto& id : by_group.train.ids) train_groups.insert(group_of(id));
  for (const auto& id : by_group.valid.ids) EXPECT_EQ(train_groups.count(group_of(id)), 0u) << id;
  EXPECT_EQ(by_group.train.size() + by_group.valid.size(), 40u);

  // An unreadable validation patch (with --skip-bad) shrinks valid, not train.
  const std::string victim = by_label.valid.ids.front();
  fs::path victim_path;
  for (const auto& e : index.entries)
    if (e.id == victim) victim_path = e.path;
  write_text(victim_path, "not a png");
  o.groups.clear();
  o.load.skip_bad = true;
  auto skipped = load_train_valid(index, rows, o);
  ASSERT_EQ(skipped.skipped.size(), 1u);
  EXPECT_EQ(skipped.skipped[0].id, victim);
  EXPECT_EQ(skipped.train.ids, by_label.train.ids);
  EXPECT_EQ(skipped.valid.size(), 9u);
  EXPECT_EQ(ids_of(skipped.valid).count(victim), 0u);

  // --valid: its ids that are also training rows are counted; the patches come from there.
  o.valid = (dir / "cf").string();
  std::vector<std::size_t> three;
  for (std::size_t r = 0; three.size() < 3; ++r)
    if (index.entries[r].id != victim) three.push_back(r);
  auto shared = load_train_valid(index, three, o);
  EXPECT_EQ(shared.shared_ids, 3u);
  EXPECT_EQ(shared.train.size(), 3u);
  EXPECT_EQ(shared.valid.size(), 39u);  // the unreadable one left out

  // A patch without a group: one line naming it.
  write_text(dir / "few.csv", "id,group\np0,a\n");
  o = TrainValidOptions{};
  o.groups = (dir / "few.csv").string();
  try {
    load_train_valid(index, rows, o);
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("has no group; give every patch a group"), std::string::npos) << e.what();
  }
}

TEST(Store, PackRoundTripsThroughHdf5) {
  TempDir dir;
  fs::create_directories(dir / "cf/0");
  fs::create_directories(dir / "cf/1");
  for (int i = 0; i < 5; ++i) {
    auto p = patch(i % 2, 10 + i);
    write_patch(dir / ("cf/" + std::to_string(i % 2) + "/p" + std::to_string(i) + ".png"), p.data());
  }
  auto index = index_source(dir / "cf");
  auto store = load_all_patches(index);
  write_packed(store, dir / "store.h5");
  auto packed = index_source(dir / "store.h5");
  EXPECT_EQ(packed.kind, SourceKind::packed);
  auto back = load_all_patches(packed);
  EXPECT_EQ(back.ids, store.ids);
  EXPECT_EQ(back.labels, store.labels);
  EXPECT_EQ(back.pixels, store.pixels);
  // A selection in any order reads the right rows.
  auto some = load_patches(packed, std::vector<std::size_t>{3, 0});
  EXPECT_EQ(some.ids, (std::vector<std::string>{store.ids[3], store.ids[0]}));
  EXPECT_TRUE(std::equal(some.pixels.begin(), some.pixels.begin() + kPatchBytes, store.image(3)));
}

TEST(Store, SkipBadRecordsUnreadableFiles) {
  TempDir dir;
  fs::create_directories(dir / "cf/0");
  auto p = patch(false, 1);
  write_patch(dir / "cf/0/good.png", p.data());
  write_text(dir / "cf/0/bad.png", "garbage");
  auto index = index_source(dir / "cf");
  EXPECT_THROW(load_all_patches(index), InputError);
  LoadOptions skip;
  skip.skip_bad = true;
  std::vector<SkippedFile> skipped;
  auto store = load_all_patches(index, skip, &skipped);
  ASSERT_EQ(store.size(), 1u);
  EXPECT_EQ(store.ids[0], "good");
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_EQ(skipped[0].id, "bad");
}

TEST(Hdf5, RealPcamPairAndMismatchedLengths) {
  fs::path x = test::shared_data("pcam-h5/camelyonpatch_level_2_split_valid_x.h5");
  if (x.empty()) GTEST_SKIP() << "shared data not present";
  auto index = index_source(x);
  EXPECT_EQ(index.kind, SourceKind::pcam_h5);
  EXPECT_EQ(index.entries.size(), 256u);
  EXPECT_EQ(index.count(1), 128u);
  auto store = load_patches(index, std::vector<std::size_t>{0}, {});
  EXPECT_EQ(store.ids[0], "0");
}

TEST(Hdf5, RefusesPairsOfDifferentLengthsAndWrongShapes) {
  TempDir dir;
  std::vector<std::uint8_t> px(3 * kPatchBytes, 1);
  h5_write_packed(dir / "m_x.h5", 3, px.data(), {}, {});
  h5_write_packed(dir / "m_y.h5", 2, nullptr, {0, 1}, {});
  std::string e = error_of([&] { index_source(dir / "m_x.h5"); });
  EXPECT_NE(e.find("'y' holds 2 labels but"), std::string::npos) << e;
  EXPECT_NE(e.find("holds 3 images"), std::string::npos) << e;
  h5_write_packed(dir / "n_x.h5", 3, px.data(), {}, {});
  std::string missing = error_of([&] { index_source(dir / "n_x.h5"); });
  EXPECT_NE(missing.find("n_y.h5 is missing"), std::string::npos) << missing;
  write_text(dir / "fake_x.h5", "not hdf5");
  EXPECT_NE(error_of([&] { index_source(dir / "fake_x.h5"); }).find("not an HDF5 file"), std::string::npos);
}

namespace {

// A 96x96 TIFF with `bits` bits per sample (1: black and white), written with libtiff.
void write_gray_tiff(const fs::path& path, int bits) {
  TIFF* tif = TIFFOpen(path.c_str(), "w");
  ASSERT_NE(tif, nullptr);
  TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, 96);
  TIFFSetField(tif, TIFFTAG_IMAGELENGTH, 96);
  TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, bits);
  TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, 1);
  TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
  TIFFSetField(tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
  TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, 96);
  std::vector<std::uint8_t> row(static_cast<std::size_t>((96 * bits + 7) / 8), 0x5A);
  for (std::uint32_t y = 0; y < 96; ++y) TIFFWriteScanline(tif, row.data(), y, 0);
  TIFFClose(tif);
}

void write_h5_x(const fs::path& path, std::vector<hsize_t> dims) {
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  hid_t d = H5Dcreate2(f, "x", H5T_STD_U8LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dclose(d);
  H5Sclose(space);
  H5Fclose(f);
}

}  // namespace

TEST(ImageIo, RefusesTiffsThatAreNotEightBitAndJpegsNamedTif) {
  TempDir dir;
  std::vector<std::uint8_t> out(kPatchBytes);
  write_gray_tiff(dir / "bw.tif", 1);
  std::string e = error_of([&] { decode_patch(dir / "bw.tif", out.data()); });
  EXPECT_NE(e.find("bw.tif: a 1-bit TIFF (black and white)"), std::string::npos) << e;
  write_gray_tiff(dir / "deep.tif", 16);
  e = error_of([&] { decode_patch(dir / "deep.tif", out.data()); });
  EXPECT_NE(e.find("deep.tif: a 16-bit TIFF"), std::string::npos) << e;
  write_gray_tiff(dir / "gray8.tif", 8);
  EXPECT_NO_THROW(decode_patch(dir / "gray8.tif", out.data()));  // 8-bit grayscale is converted
  auto p = patch(true, 9);
  write_patch(dir / "real.jpg", p.data());
  fs::rename(dir / "real.jpg", dir / "fake.tif");
  e = error_of([&] { decode_patch(dir / "fake.tif", out.data()); });
  EXPECT_NE(e.find("fake.tif: a JPEG file named .tif; rename it to its real extension (.jpg)"), std::string::npos) << e;
}

TEST(ImageIo, UnreadableFileNamesItsPermissions) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads any file";
  TempDir dir;
  auto p = patch(true, 9);
  write_patch(dir / "locked.tif", p.data());
  fs::permissions(dir / "locked.tif", fs::perms::none);
  std::vector<std::uint8_t> out(kPatchBytes);
  EXPECT_NE(error_of([&] { decode_patch(dir / "locked.tif", out.data()); }).find("permission denied"), std::string::npos);
}

TEST(LabelsCsv, AFolderInsteadOfAFileIsNamed) {
  TempDir dir;
  fs::create_directories(dir / "labels.csv");
  EXPECT_NE(error_of([&] { read_labels_csv(dir / "labels.csv"); }).find("is a folder, not a CSV file"), std::string::npos);
}

TEST(Hdf5, RefusesImagesOfAnotherShape) {
  TempDir dir;
  write_h5_x(dir / "small_x.h5", {10, 32, 32, 3});
  std::string e = error_of([&] { index_source(dir / "small_x.h5"); });
  EXPECT_NE(e.find("dataset 'x' is 10x32x32x3; expected N x 96 x 96 x 3 uint8"), std::string::npos) << e;
  write_h5_x(dir / "flat_x.h5", {10, 27648});
  EXPECT_NE(error_of([&] { index_source(dir / "flat_x.h5"); }).find("is 10x27648"), std::string::npos);
}

TEST(Hdf5, RefusesChunksWiderThanTheirDataset) {
  // Found by fuzz_hdf5 (kept as the fixture): 'y' is 2x1x1x1 in chunks of 2x1x131073x1;
  // HDF5 1.10 copied past its buffer reading it (a heap overflow under ASan).
  SourceOptions unlabeled;
  unlabeled.require_labels = false;
  fs::path f = fs::path(HISTOSCAN_SOURCE_DIR) / "tests/fixtures/hdf5/chunk_wider_than_dataset.h5";
  std::string e = error_of([&] { index_source(f, unlabeled); });
  EXPECT_NE(e.find("dataset 'y' is 2x1x1x1 in chunks of 2x1x131073x1, which cannot be; the file is damaged"), std::string::npos)
      << e;
}

TEST(Hdf5, AFileThatCrashesHdf5ItselfGetsOneLineAndThisProcessLives) {
  // Found by fuzz_hdf5 (kept as the fixture): a damaged group's local heap makes HDF5 1.10
  // dereference a null pointer inside H5Lexists (SIGSEGV). index_source reads each HDF5 file
  // in a child process first, so the crash is the child's and the caller gets an InputError.
  fs::path f = fs::path(HISTOSCAN_SOURCE_DIR) / "tests/fixtures/hdf5/crashes_hdf5_1.10.h5";
  SourceOptions unlabeled;
  unlabeled.require_labels = false;
  std::string e = error_of([&] { index_source(f, unlabeled); });
  EXPECT_NE(e.find("crashes_hdf5_1.10.h5: the HDF5 library crashed reading this file ("), std::string::npos) << e;
  EXPECT_NE(e.find("the file is damaged"), std::string::npos) << e;
  // An error (not a crash) in the child is left to the caller, who meets it again in its own
  // reads; good files still read.
  EXPECT_NO_THROW(h5_probe_isolated(
      f, [](const std::string&) { throw InputError("probe says no"); }, ""));
  fs::path pcam = test::shared_data("pcam-h5/camelyonpatch_level_2_split_valid_x.h5");
  if (!pcam.empty()) {
    EXPECT_EQ(index_source(pcam).entries.size(), 256u);
  }
}

namespace {
int g_touched = 0;
}  // namespace

TEST(Isolate, ProbesRunInOneHelperProcessThatCrashesMayNotTakeDown) {
  using histoscan::probe_in_child;
  using histoscan::ProbeOutcome;
  TempDir dir;
  auto pid_file = (dir / "pid").string();
  // The probe runs elsewhere: this process's memory is untouched, and one helper serves calls.
  auto write_pid = [](const std::string& file) {
    g_touched = 1;
    test::write_text(file, std::to_string(::getpid()));
  };
  EXPECT_EQ(probe_in_child(write_pid, pid_file, 64).kind, ProbeOutcome::kFinished);
  EXPECT_EQ(g_touched, 0);
  const std::string helper = test::read_text(pid_file);
  EXPECT_NE(helper, std::to_string(::getpid()));
  EXPECT_EQ(probe_in_child([](const std::string&) { throw std::runtime_error("no"); }, "", 64).kind, ProbeOutcome::kThrew);
  ASSERT_EQ(probe_in_child(write_pid, pid_file, 64).kind, ProbeOutcome::kFinished);
  EXPECT_EQ(test::read_text(pid_file), helper) << "the same helper answers again";

  ProbeOutcome crash = probe_in_child([](const std::string&) { std::raise(SIGSEGV); }, "", 64);
  EXPECT_EQ(crash.kind, ProbeOutcome::kCrashed);
  // The signal's name; under AddressSanitizer, whose handler reports the crash and exits,
  // "exit status 1".
  EXPECT_TRUE(crash.how == strsignal(SIGSEGV) || crash.how == "exit status 1") << crash.how;
  auto grow = [](const std::string&) {
    std::vector<char> big(300u << 20);
    std::memset(big.data(), 1, big.size());  // touched: resident
    g_touched = static_cast<unsigned char>(big[12345]);
  };
  EXPECT_EQ(probe_in_child(grow, "", 100).kind, ProbeOutcome::kTooMuchMemory);
  EXPECT_EQ(probe_in_child(grow, "", 1000).kind, ProbeOutcome::kFinished);
  EXPECT_EQ(probe_in_child([](const std::string&) { ::sleep(30); }, "", 64, 1).kind, ProbeOutcome::kHung);
  ASSERT_EQ(probe_in_child(write_pid, pid_file, 64).kind, ProbeOutcome::kFinished) << "a new helper after each failure";
  EXPECT_NE(test::read_text(pid_file), helper);
  EXPECT_EQ(g_touched, 0);
}

TEST(Hdf5, RefusesDatasetsThatClaimMoreThanTheyStore) {
  // Found by fuzz_hdf5: sizes come from a dataset's header, and a damaged file can claim any
  // number of rows with nothing stored behind them (was a loop over 2^32 rows, std::bad_alloc).
  TempDir dir;
  write_h5_x(dir / "claim.h5", {hsize_t(1) << 32, 96, 96, 3});
  std::string e = error_of([&] { h5_count_patches(dir / "claim.h5"); });
  EXPECT_NE(e.find("dataset 'x' is 4294967296x96x96x3 but stores 0 bytes"), std::string::npos) << e;
  std::vector<std::uint8_t> px(kPatchBytes, 7);
  h5_write_packed(dir / "ids.h5", 1, px.data(), {}, {});
  {
    hid_t f = H5Fopen((dir / "ids.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    hsize_t n = hsize_t(1) << 40;
    hid_t space = H5Screate_simple(1, &n, nullptr);
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, 16);
    hid_t d = H5Dcreate2(f, "ids", type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(d);
    H5Tclose(type);
    H5Sclose(space);
    H5Fclose(f);
  }
  SourceOptions unlabeled;
  unlabeled.require_labels = false;
  e = error_of([&] { index_source(dir / "ids.h5", unlabeled); });
  EXPECT_NE(e.find("dataset 'ids' is 1099511627776 but stores 0 bytes"), std::string::npos) << e;
  // Chunked (as PCam's own files): 4 rows declared, 1 written; the rest would read as zeros.
  {
    hid_t f = H5Fcreate((dir / "part.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[4] = {4, 96, 96, 3}, chunk[4] = {1, 96, 96, 3};
    hid_t space = H5Screate_simple(4, dims, nullptr);
    hid_t plist = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(plist, 4, chunk);
    H5Pset_deflate(plist, 1);
    hid_t d = H5Dcreate2(f, "x", H5T_STD_U8LE, space, H5P_DEFAULT, plist, H5P_DEFAULT);
    hsize_t start[4] = {0, 0, 0, 0};
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, chunk, nullptr);
    hid_t mem = H5Screate_simple(4, chunk, nullptr);
    H5Dwrite(d, H5T_NATIVE_UINT8, mem, space, H5P_DEFAULT, px.data());
    H5Sclose(mem);
    H5Dclose(d);
    H5Pclose(plist);
    H5Sclose(space);
    H5Fclose(f);
  }
  e = error_of([&] { index_source(dir / "part.h5", unlabeled); });
  EXPECT_NE(e.find("dataset 'x' is 4x96x96x3 but stores 1 of its 4 chunks"), std::string::npos) << e;
  h5_write_packed(dir / "ok.h5", 1, px.data(), {1}, {"a"});  // complete stores still read
  EXPECT_EQ(index_source(dir / "ok.h5").entries.size(), 1u);
  fs::path pcam = test::shared_data("pcam-h5/camelyonpatch_level_2_split_valid_x.h5");
  if (!pcam.empty()) {
    EXPECT_EQ(h5_count_patches(pcam), 256u);
  }
}

namespace {

long minor_page_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

// Page faults of allocating, writing and freeing a 64 MiB block (over glibc's 32 MiB mmap
// ceiling) for the second time.
[[maybe_unused]] long faults_of_a_second_large_block() {
  constexpr std::size_t kBytes = std::size_t{64} << 20;
  auto use = [] {
    auto* p = static_cast<volatile char*>(std::malloc(kBytes));
    for (std::size_t i = 0; i < kBytes; i += 4096) p[i] = 1;
    std::free(const_cast<char*>(p));
  };
  use();
  long before = minor_page_faults();
  use();
  return minor_page_faults() - before;
}

}  // namespace

// What the CLIs call first: a freed large block is reused, not unmapped and faulted in again
// (16,384 faults of 4 KiB pages), so training steps do not pay the kernel for their activations.
TEST(Memory, ReuseFreedMemoryKeepsALargeFreedBlockForTheNextAllocation) {
#if !defined(__GLIBC__) || defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "glibc's allocator only";
#else
  long by_default = faults_of_a_second_large_block();
  if (by_default < 8000)
    GTEST_SKIP() << "the kernel maps huge pages here (" << by_default << " faults by default): nothing to see";
  histoscan::reuse_freed_memory();
  long reusing = faults_of_a_second_large_block();
  mallopt(M_MMAP_MAX, 65536);  // glibc's defaults again, for the tests after this one
  mallopt(M_TRIM_THRESHOLD, 128 * 1024);
  std::cout << "faults of a second 64 MiB block: " << by_default << " by default, " << reusing << " reusing\n";
  EXPECT_LT(reusing, 1000);
#endif
}
