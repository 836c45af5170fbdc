// Stain normalization (data/stain.h) against plain step-by-step implementations of the two
// papers, and on tissue whose true stains are known: synthetic images composed from
// haematoxylin and eosin amounts by Beer-Lambert's law, so the same tissue can be "stained" twice.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <random>
#include <vector>

#include "histoscan/data/stain.h"
#include "histoscan/util/error.h"

using namespace histoscan;
using namespace histoscan::data;

namespace {

using Vec3 = std::array<double, 3>;
constexpr std::size_t kSide = 96, kPixels = kSide * kSide;

Vec3 unit(Vec3 v) {
  double n = std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
  return {v[0] / n, v[1] / n, v[2] / n};
}

// Two labs' haematoxylin and eosin: the reference vectors of Macenko's common implementation,
// and redder ones near Ruifrok and Johnston's.
const Vec3 kH = unit({0.5626, 0.7201, 0.4062}), kE = unit({0.2159, 0.8012, 0.5581});
const Vec3 kH2 = unit({0.65, 0.70, 0.29}), kE2 = unit({0.25, 0.90, 0.35});

// A tissue map: amounts of H and E per pixel. Stroma (E only), round nuclei (H, with E fading
// towards their centres), and a patch of glass (neither).
struct Tissue {
  std::vector<double> h, e;
};

Tissue make_tissue(unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  Tissue t{std::vector<double>(kPixels), std::vector<double>(kPixels)};
  for (std::size_t i = 0; i < kPixels; ++i) {
    t.e[i] = 0.8 + 0.8 * u(rng);
    t.h[i] = 0;
  }
  for (int k = 0; k < 25; ++k) {
    double cx = u(rng) * kSide, cy = u(rng) * kSide, r = 3 + 4 * u(rng), depth = 1.0 + 1.0 * u(rng);
    for (std::size_t y = 0; y < kSide; ++y)
      for (std::size_t x = 0; x < kSide; ++x) {
        double d = std::hypot(double(x) - cx, double(y) - cy);
        if (d < r) {
          t.h[y * kSide + x] = depth * (1 - 0.3 * d / r);
          t.e[y * kSide + x] *= d / r;
        }
      }
  }
  for (std::size_t y = 0; y < 20; ++y)
    for (std::size_t x = 0; x < 30; ++x) t.h[y * kSide + x] = t.e[y * kSide + x] = 0;
  return t;
}

std::vector<std::uint8_t> stain(const Tissue& t, const Vec3& h, const Vec3& e) {
  std::vector<std::uint8_t> rgb(kPixels * 3);
  for (std::size_t i = 0; i < kPixels; ++i)
    for (int c = 0; c < 3; ++c) {
      double v = kMacenkoIo * std::exp(-(h[c] * t.h[i] + e[c] * t.e[i])) - 1;
      rgb[3 * i + c] = static_cast<std::uint8_t>(std::clamp(std::lround(v), 0L, 255L));
    }
  return rgb;
}

double cosine(const Vec3& a, const Vec3& b) {
  return (a[0] * b[0] + a[1] * b[1] + a[2] * b[2]) /
         std::sqrt((a[0] * a[0] + a[1] * a[1] + a[2] * a[2]) * (b[0] * b[0] + b[1] * b[1] + b[2] * b[2]));
}

double mean_abs_diff(const std::vector<std::uint8_t>& a, const std::vector<std::uint8_t>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += std::abs(int(a[i]) - int(b[i]));
  return s / double(a.size());
}

int max_abs_diff(const std::vector<std::uint8_t>& a, const std::vector<std::uint8_t>& b) {
  int m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(int(a[i]) - int(b[i])));
  return m;
}

// ---- Macenko et al. 2009, step by step as the paper (and its common numpy port) writes it ----

// numpy.percentile: sort, then interpolate linearly between the two nearest ranks.
double np_percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  double pos = q / 100 * double(v.size() - 1);
  std::size_t lo = std::size_t(pos), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - double(lo)) * (v[hi] - v[lo]);
}

// Eigenvectors of a symmetric 3 x 3 matrix by Jacobi rotations; columns of V, eigenvalues in d.
void jacobi(double a[3][3], double v[3][3], double d[3]) {
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) v[i][j] = i == j;
  for (int sweep = 0; sweep < 100; ++sweep)
    for (int p = 0; p < 3; ++p)
      for (int q = p + 1; q < 3; ++q) {
        if (std::abs(a[p][q]) < 1e-300) continue;
        double theta = (a[q][q] - a[p][p]) / (2 * a[p][q]);
        double t = (theta >= 0 ? 1 : -1) / (std::abs(theta) + std::sqrt(theta * theta + 1));
        double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (int k = 0; k < 3; ++k) {  // A <- A J
          double akp = a[k][p], akq = a[k][q];
          a[k][p] = c * akp - s * akq;
          a[k][q] = s * akp + c * akq;
        }
        for (int k = 0; k < 3; ++k) {  // A <- J^T A
          double apk = a[p][k], aqk = a[q][k];
          a[p][k] = c * apk - s * aqk;
          a[q][k] = s * apk + c * aqk;
        }
        for (int k = 0; k < 3; ++k) {
          double vkp = v[k][p], vkq = v[k][q];
          v[k][p] = c * vkp - s * vkq;
          v[k][q] = s * vkp + c * vkq;
        }
      }
  for (int i = 0; i < 3; ++i) d[i] = a[i][i];
}

struct PlainMacenko {
  Vec3 h, e;
  double max_h, max_e;
  std::vector<double> ch, ce;  // every pixel's amounts
};

PlainMacenko plain_macenko(const std::vector<std::uint8_t>& rgb) {
  const double Io = 240, alpha = 1, beta = 0.15;
  std::size_t n = rgb.size() / 3;
  // 1. optical density OD = -ln((I + 1) / Io); 2. drop pixels with OD < beta in any channel.
  std::vector<Vec3> od(n), odhat;
  for (std::size_t i = 0; i < n; ++i) {
    for (int c = 0; c < 3; ++c) od[i][c] = -std::log((rgb[3 * i + c] + 1.0) / Io);
    if (od[i][0] >= beta && od[i][1] >= beta && od[i][2] >= beta) odhat.push_back(od[i]);
  }
  // 3. eigenvectors of cov(ODhat); the plane of the two largest.
  Vec3 mean{};
  for (auto& x : odhat)
    for (int c = 0; c < 3; ++c) mean[c] += x[c] / double(odhat.size());
  double cov[3][3] = {};
  for (auto& x : odhat)
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c) cov[r][c] += (x[r] - mean[r]) * (x[c] - mean[c]) / double(odhat.size() - 1);
  double V[3][3], d[3];
  jacobi(cov, V, d);
  int order[3] = {0, 1, 2};
  std::sort(order, order + 3, [&](int a, int b) { return d[a] > d[b]; });
  Vec3 e1{V[0][order[0]], V[1][order[0]], V[2][order[0]]}, e2{V[0][order[1]], V[1][order[1]], V[2][order[1]]};
  if (e1[0] + e1[1] + e1[2] < 0)
    for (auto& x : e1) x = -x;
  // 4. project onto the plane, angle of each point; 5. robust extremes (alpha, 100 - alpha).
  std::vector<double> phi;
  for (auto& x : odhat) {
    double t1 = x[0] * e2[0] + x[1] * e2[1] + x[2] * e2[2], t2 = x[0] * e1[0] + x[1] * e1[1] + x[2] * e1[2];
    phi.push_back(std::atan2(t2, t1));
  }
  double lo = np_percentile(phi, alpha), hi = np_percentile(phi, 100 - alpha);
  Vec3 vmin, vmax;
  for (int c = 0; c < 3; ++c) {
    vmin[c] = e2[c] * std::cos(lo) + e1[c] * std::sin(lo);
    vmax[c] = e2[c] * std::cos(hi) + e1[c] * std::sin(hi);
  }
  PlainMacenko m;
  // 6. haematoxylin first (more red absorbed).
  m.h = vmin[0] > vmax[0] ? vmin : vmax;
  m.e = vmin[0] > vmax[0] ? vmax : vmin;
  // 7. concentrations: least squares C = pinv(HE) OD, pinv by the Moore-Penrose formula.
  double a = 0, b = 0, c2 = 0;
  for (int c = 0; c < 3; ++c) {
    a += m.h[c] * m.h[c];
    b += m.h[c] * m.e[c];
    c2 += m.e[c] * m.e[c];
  }
  double inv[2][2] = {{c2 / (a * c2 - b * b), -b / (a * c2 - b * b)}, {-b / (a * c2 - b * b), a / (a * c2 - b * b)}};
  for (auto& x : od) {
    double p = 0, q = 0;
    for (int c = 0; c < 3; ++c) {
      p += m.h[c] * x[c];
      q += m.e[c] * x[c];
    }
    m.ch.push_back(inv[0][0] * p + inv[0][1] * q);
    m.ce.push_back(inv[1][0] * p + inv[1][1] * q);
  }
  // 8. the 99th percentile of each stain's amount.
  m.max_h = np_percentile(m.ch, 99);
  m.max_e = np_percentile(m.ce, 99);
  return m;
}

// 9. amounts scaled to the reference's maxima, recomposed with the reference's stains.
std::vector<std::uint8_t> plain_macenko_normalize(const std::vector<std::uint8_t>& rgb, const PlainMacenko& ref) {
  auto m = plain_macenko(rgb);
  std::vector<std::uint8_t> out(rgb.size());
  for (std::size_t i = 0; i < m.ch.size(); ++i) {
    double h = m.ch[i] * ref.max_h / m.max_h, e = m.ce[i] * ref.max_e / m.max_e;
    Vec3 hv = ref.h, ev = ref.e;
    for (int c = 0; c < 3; ++c) {
      double v = 240 * std::exp(-(hv[c] * h + ev[c] * e));
      out[3 * i + c] = static_cast<std::uint8_t>(std::min(255.0, std::max(0.0, std::round(v))));
    }
  }
  return out;
}

// ---- Reinhard et al. 2001, step by step: RGB -> LMS -> log10 -> l-alpha-beta, and back ----
Vec3 plain_lab(const std::uint8_t* p) {
  double rgb[3] = {double(p[0]), double(p[1]), double(p[2])};
  const double M[3][3] = {{0.3811, 0.5783, 0.0402}, {0.1967, 0.7244, 0.0782}, {0.0241, 0.1288, 0.8444}};
  double lms[3];
  for (int r = 0; r < 3; ++r) lms[r] = std::log10(std::max(1.0, M[r][0] * rgb[0] + M[r][1] * rgb[1] + M[r][2] * rgb[2]));
  const double A[3][3] = {{1, 1, 1}, {1, 1, -2}, {1, -1, 0}};
  const double D[3] = {1 / std::sqrt(3.0), 1 / std::sqrt(6.0), 1 / std::sqrt(2.0)};
  Vec3 out;
  for (int r = 0; r < 3; ++r) out[r] = D[r] * (A[r][0] * lms[0] + A[r][1] * lms[1] + A[r][2] * lms[2]);
  return out;
}

void plain_rgb(const Vec3& lab, std::uint8_t* p) {
  const double D[3] = {std::sqrt(3.0) / 3, std::sqrt(6.0) / 6, std::sqrt(2.0) / 2};
  const double B[3][3] = {{1, 1, 1}, {1, 1, -1}, {1, -2, 0}};
  double s[3] = {D[0] * lab[0], D[1] * lab[1], D[2] * lab[2]}, lms[3];
  for (int r = 0; r < 3; ++r) lms[r] = std::pow(10.0, B[r][0] * s[0] + B[r][1] * s[1] + B[r][2] * s[2]);
  const double M[3][3] = {{4.4679, -3.5873, 0.1193}, {-1.2186, 2.3809, -0.1624}, {0.0497, -0.2439, 1.2045}};
  for (int r = 0; r < 3; ++r)
    p[r] = static_cast<std::uint8_t>(
        std::min(255.0, std::max(0.0, std::round(M[r][0] * lms[0] + M[r][1] * lms[1] + M[r][2] * lms[2]))));
}

std::pair<Vec3, Vec3> plain_lab_stats(const std::vector<std::uint8_t>& rgb) {
  std::size_t n = rgb.size() / 3;
  std::vector<Vec3> lab(n);
  for (std::size_t i = 0; i < n; ++i) lab[i] = plain_lab(&rgb[3 * i]);
  Vec3 mean{}, sd{};
  for (auto& v : lab)
    for (int c = 0; c < 3; ++c) mean[c] += v[c] / double(n);
  for (auto& v : lab)
    for (int c = 0; c < 3; ++c) sd[c] += (v[c] - mean[c]) * (v[c] - mean[c]) / double(n);
  for (auto& x : sd) x = std::sqrt(x);
  return {mean, sd};
}

}  // namespace

TEST(StainMacenko, FindsTheStainsAnImageWasMadeWith) {
  for (auto [h, e] : {std::pair{kH, kE}, std::pair{kH2, kE2}}) {
    auto rgb = stain(make_tissue(1), h, e);
    auto ref = fit_macenko(rgb.data(), kPixels, "synthetic");
    EXPECT_GT(cosine(ref.stains[0], h), 0.995) << "haematoxylin " << cosine(ref.stains[0], h);
    EXPECT_GT(cosine(ref.stains[1], e), 0.995) << "eosin " << cosine(ref.stains[1], e);
  }
}

TEST(StainMacenko, MatchesThePaperStepByStep) {
  auto reference_image = stain(make_tissue(2), kH, kE);
  auto plain_ref = plain_macenko(reference_image);
  auto ref = fit_stain_reference(StainMethod::macenko, reference_image.data(), kPixels, 1, "reference");
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(ref.stains[0][c], plain_ref.h[c], 1e-9);
    EXPECT_NEAR(ref.stains[1][c], plain_ref.e[c], 1e-9);
  }
  EXPECT_NEAR(ref.max_amount[0], plain_ref.max_h, 1e-9);
  EXPECT_NEAR(ref.max_amount[1], plain_ref.max_e, 1e-9);

  // Two images at once (each normalized on its own), against the plain version of each.
  auto a = stain(make_tissue(3), kH2, kE2), b = stain(make_tissue(4), kH, kE2);
  std::vector<std::uint8_t> both(a);
  both.insert(both.end(), b.begin(), b.end());
  normalize_stain(ref, both.data(), kPixels, 2, 2);
  EXPECT_LE(
      max_abs_diff(std::vector<std::uint8_t>(both.begin(), both.begin() + long(a.size())), plain_macenko_normalize(a, plain_ref)),
      1);
  EXPECT_LE(
      max_abs_diff(std::vector<std::uint8_t>(both.begin() + long(a.size()), both.end()), plain_macenko_normalize(b, plain_ref)),
      1);
}

TEST(StainMacenko, TissueStainedElsewhereComesBackToTheReferencesColours) {
  auto tissue = make_tissue(5);
  auto here = stain(tissue, kH, kE), elsewhere = stain(tissue, kH2, kE2);
  auto ref = fit_stain_reference(StainMethod::macenko, here.data(), kPixels, 1, "here");
  const double before = mean_abs_diff(elsewhere, here);
  normalize_stain(ref, elsewhere.data(), kPixels, 1, 1);
  const double after = mean_abs_diff(elsewhere, here);
  EXPECT_GT(before, 10.0);
  EXPECT_LT(after, 2.0) << "before: " << before;
}

TEST(StainMacenko, LeavesAnImageWithoutTissueAsItWas) {
  std::vector<std::uint8_t> glass(kPixels * 3, 236);
  auto ref = fit_stain_reference(StainMethod::macenko, stain(make_tissue(6), kH, kE).data(), kPixels, 1, "r");
  auto copy = glass;
  normalize_stain(ref, copy.data(), kPixels, 1, 1);
  EXPECT_EQ(copy, glass);
  EXPECT_THROW(fit_macenko(glass.data(), kPixels, "glass.png"), InputError);
}

TEST(StainReinhard, MatchesThePaperStepByStep) {
  auto target = stain(make_tissue(7), kH, kE), source = stain(make_tissue(8), kH2, kE2);
  auto ref = fit_stain_reference(StainMethod::reinhard, target.data(), kPixels, 1, "target");
  auto [tmean, tsd] = plain_lab_stats(target);
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(ref.mean[c], tmean[c], 1e-9);
    EXPECT_NEAR(ref.stdev[c], tsd[c], 1e-9);
  }
  // Plain: each l-alpha-beta value shifted and scaled to the target's statistics.
  auto [smean, ssd] = plain_lab_stats(source);
  std::vector<std::uint8_t> expected(source.size());
  for (std::size_t i = 0; i < kPixels; ++i) {
    auto v = plain_lab(&source[3 * i]);
    for (int c = 0; c < 3; ++c) v[c] = (v[c] - smean[c]) * tsd[c] / ssd[c] + tmean[c];
    plain_rgb(v, &expected[3 * i]);
  }
  normalize_stain(ref, source.data(), kPixels, 1, 1);
  EXPECT_LE(max_abs_diff(source, expected), 1);
  // And the result has the target's colour statistics (to the rounding of bytes).
  auto [mean, sd] = plain_lab_stats(source);
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(mean[c], tmean[c], 0.02) << c;
    EXPECT_NEAR(sd[c], tsd[c], 0.02) << c;
  }
}

TEST(StainReference, KeepsItsFitInTheCheckpointsJson) {
  auto img = stain(make_tissue(9), kH, kE);
  for (auto method : {StainMethod::macenko, StainMethod::reinhard}) {
    auto ref = fit_stain_reference(method, img.data(), kPixels, 1, "train");
    auto back = stain_from_json(nlohmann::json::parse(to_json(ref).dump()), "best.pt");
    EXPECT_EQ(back.method, method);
    EXPECT_EQ(back.fitted_on, "train");
    auto x = stain(make_tissue(10), kH2, kE2), y = x;
    normalize_stain(ref, x.data(), kPixels, 1, 1);
    normalize_stain(back, y.data(), kPixels, 1, 1);
    EXPECT_EQ(x, y) << stain_method_name(method);
  }
  EXPECT_EQ(stain_from_json(nullptr, "best.pt").method, StainMethod::none);
  EXPECT_THROW(stain_from_json({{"method", "macenko"}}, "best.pt"), InputError);
  try {
    stain_method_of("vahadane");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--stain-norm vahadane"), std::string::npos);
  }
}
