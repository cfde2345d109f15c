#!/usr/bin/env python3
"""GPU: Hugging Face transformers' GPTNeoXForCausalLM (attn_implementation="sdpa") forward at the Pythia
shapes bench_gpu_models uses (random weights, bf16, no grad), CUDA-event medians after warm-up. One JSON line
per model, for the comparison with bench_gpu_models' teacher_fwd lines."""
import argparse
import json

import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

SHAPES = {"160m": (768, 12, 12, 3072), "410m": (1024, 24, 16, 4096), "1b": (2048, 16, 8, 8192)}


def pythia_model(name, max_positions):
    """GPTNeoXForCausalLM at a Pythia shape (d, layers, heads, MLP width from SHAPES), random weights (seed 0),
    sdpa attention, bf16, on CUDA in eval mode; bench/gpu_hf_generate.py builds its model here too."""
    d, L, H, F = SHAPES[name]
    cfg = GPTNeoXConfig(vocab_size=50304, hidden_size=d, num_hidden_layers=L, num_attention_heads=H,
                        intermediate_size=F, rotary_pct=0.25, max_position_embeddings=max_positions,
                        use_parallel_residual=True, hidden_act="gelu")
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM._from_config(cfg, attn_implementation="sdpa", torch_dtype=torch.bfloat16)
    return model.cuda().eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="160m,410m,1b")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--context", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=10)
    a = ap.parse_args()
    for name in a.models.split(","):
        model = pythia_model(name, max_positions=2048)
        ids = torch.randint(0, 50304, (a.batch, a.context), device="cuda")
        times = []
        with torch.no_grad():
            for i in range(2 + a.reps):
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                model(input_ids=ids, use_cache=False)
                e.record()
                e.synchronize()
                if i >= 2:
                    times.append(s.elapsed_time(e))
        times.sort()
        ms = times[len(times) // 2]
        print(json.dumps(dict(bench="hf_teacher_fwd_sdpa", model=f"pythia-{name}", B=a.batch, T=a.context, ms=ms,
                              tokens_per_s=a.batch * a.context / (ms * 1e-3),
                              attn=model.config._attn_implementation)), flush=True)
        del model
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
