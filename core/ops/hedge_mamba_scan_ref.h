// Reference forms of the HedgeMamba scan (docs/method.md §6), slow and exact, against which the chunked and
// fused forms are tested. Same inputs and outputs as hedge_mamba_scan_chunked (hedge_mamba_scan.h).
#pragma once

#include <ATen/ATen.h>

#include "core/ops/hedge_mamba_scan.h"

namespace hedgelab::ops {

// The recurrence, one token at a time: the oracle.
ScanOutput hedge_mamba_scan_sequential(const at::Tensor& x, const at::Tensor& Bm, const at::Tensor& Cm,
                                       const at::Tensor& dt, const at::Tensor& A,
                                       const ScanState* initial = nullptr);

// The materialised decay-masked form over the whole sequence, O(T²) memory: no chunks and no carried state,
// so it checks the chunked form's bookkeeping between chunks independently of the oracle. When implied_out is
// given it receives the mixer's implied attention M_ts = (C_t·B_s) Δ_s e^{ℓ_t−ℓ_s} [B,H,T,T] (zero above the
// diagonal; the initial state's contribution is not part of M).
ScanOutput hedge_mamba_scan_quadratic(const at::Tensor& x, const at::Tensor& Bm, const at::Tensor& Cm,
                                      const at::Tensor& dt, const at::Tensor& A,
                                      const ScanState* initial = nullptr, at::Tensor* implied_out = nullptr);

}  // namespace hedgelab::ops
