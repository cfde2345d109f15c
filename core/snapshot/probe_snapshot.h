// What the probes of docs/method.md §7 measured at one step of a run, as plain values: no LibTorch here, so
// views, sessions and tools include this header without it. core/distill/probes computes these from the
// models; sessions/ stores and reads them; views/ draws them. Shape symbols: docs/architecture.md, "Shapes"
// (Tp is the number of tokens of the probe text).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hedgelab::snapshot {

// A dense row-major matrix of floats; empty (0 × 0) when a probe does not apply.
struct Grid {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<float> values;  // rows · cols

  Grid() = default;
  Grid(int64_t r, int64_t c) : rows(r), cols(c), values(static_cast<size_t>(r * c), 0.0f) {}
  float at(int64_t r, int64_t c) const { return values[static_cast<size_t>(r * cols + c)]; }
  float& at(int64_t r, int64_t c) { return values[static_cast<size_t>(r * cols + c)]; }
  bool empty() const { return values.empty(); }
};

// One layer, one head, on the probe text.
struct HeadAttention {
  Grid teacher;  // P [Tp, Tp]: the teacher's softmax weights (rows sum to 1, zero above the diagonal)
  Grid student;  // [Tp, Tp]: stage 1's Hedgehog ā, or the mixer's implied attention in stage 2
  double teacher_entropy = 0.0;  // mean over rows of −Σ_s P_ts log P_ts (nats)
  double student_entropy = 0.0;  // the same for the student's (row-renormalised) map
  double row_kl = 0.0;           // mean over rows of KL(P_t ‖ ā_t) (nats)
  double spearman = 0.0;         // ρ between the teacher logits and the feature logits over pairs s ≤ t
  // Pairs s ≤ t in row-major order of the lower triangle (t = 0: s = 0; t = 1: s = 0, 1; …), Tp(Tp+1)/2 each.
  std::vector<float> teacher_logits;  // q_t·k_s/√P (rotary applied)
  std::vector<float> feature_logits;  // log φ_q(q_t)ᵀφ_k(k_s) (stage 1), log C_tᵀB_s (stage 2)
};

// Per-layer cosine alignment of the student's attention/mixer output with the teacher's (§7), on the fixed
// held-out probe batch.
struct LayerAlignment {
  double teacher_forced = 0.0;  // the student's layer fed the teacher's ln1 input
  double free_running = 0.0;    // the student's layer in its own residual stream
};

// The learned feature maps of one layer (stage 1 and stage 2 alike), per head.
struct FeatureMapWeights {
  std::vector<Grid> q;  // per head W_q [m, P]
  std::vector<Grid> k;  // per head W_k [m, P]
};

// One HedgeMamba mixer on the probe text (stage 2 only).
struct MixerInternals {
  Grid delta;                     // Δ [H, Tp]
  Grid alpha;                     // α = exp(Δ A) [H, Tp]
  Grid gate;                      // g(z) [Tp, d]; empty without a gate
  Grid state_norm;                // ‖S_t‖_F [H, Tp]
  std::vector<Grid> final_state;  // per head S_T [N, P]
  Grid conv_x, conv_k, conv_q;    // taps [d, W]; empty without convs
};

struct ProbeSnapshot {
  std::string run;    // "hedgemamba", an ablation name, …
  std::string stage;  // "stage1" or "stage2"
  int64_t step = 0;   // optimizer steps done in this stage
  int64_t tokens_seen = 0;
  int64_t layers = 0;                       // L
  int64_t heads = 0;                        // H
  std::vector<std::string> tokens;          // the probe text's tokens, decoded (axis labels), Tp of them
  std::vector<LayerAlignment> alignment;    // [L]
  std::vector<HeadAttention> attention;     // [L · H], layer-major: index ℓ · H + h
  std::vector<FeatureMapWeights> features;  // [L]
  std::vector<MixerInternals> mixers;       // [L] in stage 2; empty in stage 1

  const HeadAttention& head(int64_t layer, int64_t h) const {
    return attention[static_cast<size_t>(layer * heads + h)];
  }
};

}  // namespace hedgelab::snapshot
