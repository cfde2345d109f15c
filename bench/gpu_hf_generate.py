#!/usr/bin/env python3
"""GPU: Hugging Face transformers' GPTNeoXForCausalLM (sdpa, bf16, random weights) decoding with its KV cache,
at the settings of bench_gpu_generate (the student's recurrent decoding): for each batch x context the context
is prefilled in pieces into the cache (keeping only the last position's logits), then --decode tokens are
generated greedily one at a time. Reported per configuration, one JSON line: per-token decode time (CUDA-event
median), decode tokens/s, prefill seconds, the KV cache's bytes per sequence and the allocator's peak; "oom"
when it does not fit."""
import argparse
import inspect
import json
import time

import torch

from gpu_hf_teacher import SHAPES, pythia_model


def keeps_last_logits_only(model):
    """Whether this transformers' forward takes logits_to_keep (then a prefill piece's logits are [B, 1, V])."""
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def forward(model, ids, cache, last_only):
    if last_only:
        return model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    return model(input_ids=ids, past_key_values=cache, use_cache=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="160m")
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--contexts", default="1024,8192,32768")
    ap.add_argument("--decode", type=int, default=32)
    a = ap.parse_args()
    d, L = SHAPES[a.model][:2]
    model = pythia_model(a.model, max_positions=65536)
    last_only = keeps_last_logits_only(model)
    for B in [int(b) for b in a.batches.split(",")]:
        for ctx in [int(c) for c in a.contexts.split(",")]:
            row = dict(bench="generate", impl="hf_gptneox_kvcache", model=f"pythia-{a.model}", B=B, context=ctx)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            try:
                with torch.no_grad():
                    from transformers import DynamicCache
                    cache = DynamicCache()
                    # With only the last position's logits kept, a piece's size is bounded by its activations
                    # (4096 tokens a sequence); otherwise by its logits [B, piece, V], as bench_gpu_generate's.
                    piece = 4096 if last_only else max(64, min(4096, (1 << 15) // B))
                    t0 = time.perf_counter()
                    for start in range(0, ctx, piece):
                        n = min(piece, ctx - start)
                        out = forward(model, torch.randint(0, 50304, (B, n), device="cuda"), cache, last_only)
                        cache = out.past_key_values
                    torch.cuda.synchronize()
                    row["prefill_s"] = round(time.perf_counter() - t0, 2)
                    nxt = out.logits[:, -1].argmax(-1, keepdim=True)
                    times = []
                    for i in range(3 + a.decode):
                        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                        s.record()
                        out = forward(model, nxt, cache, last_only)
                        cache = out.past_key_values
                        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
                        e.record()
                        e.synchronize()
                        if i >= 3:
                            times.append(s.elapsed_time(e))
                times.sort()
                ms = times[len(times) // 2]
                kv = 2 * L * (ctx + 3 + a.decode) * d * 2  # keys and values, bf16, per sequence
                row.update(token_ms=round(ms, 3), decode_tokens_per_s=round(B / (ms * 1e-3)),
                           kv_cache_bytes_per_sequence=kv,
                           peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2))
            except torch.cuda.OutOfMemoryError as e:
                row.update(oom=True, error=str(e).splitlines()[0][:200])
            cache = out = None
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
