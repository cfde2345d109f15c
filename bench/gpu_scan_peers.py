#!/usr/bin/env python3
"""GPU: the kernels people use today for the HedgeMamba scan's shapes, timed like bench_scan_cuda (CUDA-event
medians after warm-up, random bf16 inputs), plus the device-to-device copy ceiling, and one table that puts
them beside HedgeLab's fused scan (the JSON lines bench_scan_cuda printed, --ours).

Peers (public sources on PYTHONPATH from an ignored folder, never committed):
  state-spaces/mamba   mamba_chunk_scan_combined(x[B,T,H,P], dt[B,T,H], A[H], B,C[B,T,G=H,N], chunk 256)
  fla-org/flash-linear-attention
                       chunk_simple_gla(q=C, k=B, v=x·Δ, g=A·Δ, scale=1)  (SSD as gated linear attention)
                       chunk_linear_attn(q=C, k=B, v=x, scale=1, normalize=True)  (no decay: Hedgehog stage 1)
Triton compiles and autotunes on first use: the warm-up absorbs it, and --budget-s stops the sweep early.
"""
import argparse
import json
import os
import sys
import time
import types

import torch


def median_ms(fn, warmup=3, reps=15):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def copy_ceiling_tbps():
    src = torch.randn(512 * 1024 * 1024, device="cuda", dtype=torch.float32)  # 2 GiB
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), 3, 20)
    return 2 * src.numel() * 4 / (ms * 1e-3) / 1e12


def load_peers(peers_dir):
    sys.path.insert(0, peers_dir)
    # mamba_ssm/__init__ imports its CUDA extensions, which are not built here: import the Triton SSD only.
    pkg = types.ModuleType("mamba_ssm")
    pkg.__path__ = [os.path.join(peers_dir, "mamba_ssm")]
    sys.modules["mamba_ssm"] = pkg
    found = {}
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
        found["mamba_chunk_scan_combined"] = mamba_chunk_scan_combined
    except Exception as e:  # noqa: BLE001 - report and go on with the others
        print(f"# mamba_chunk_scan_combined unavailable: {type(e).__name__}: {e}", flush=True)
    try:
        from fla.ops.simple_gla import chunk_simple_gla
        found["fla_chunk_simple_gla"] = chunk_simple_gla
    except Exception as e:  # noqa: BLE001
        print(f"# chunk_simple_gla unavailable: {type(e).__name__}: {e}", flush=True)
    try:
        from fla.ops.linear_attn import chunk_linear_attn
        found["fla_chunk_linear_attn"] = chunk_linear_attn
    except Exception as e:  # noqa: BLE001
        print(f"# chunk_linear_attn unavailable: {type(e).__name__}: {e}", flush=True)
    return found


def make_calls(name, fn, B, T, H, P, N):
    g = torch.Generator(device="cuda").manual_seed(T + N)
    bf = dict(device="cuda", dtype=torch.bfloat16)
    x = torch.randn(B, T, H, P, device="cuda", generator=g).to(torch.bfloat16)
    Bm = torch.softmax(torch.randn(B, T, H, N, device="cuda", generator=g), -1).to(torch.bfloat16)
    Cm = torch.softmax(torch.randn(B, T, H, N, device="cuda", generator=g), -1).to(torch.bfloat16)
    dt = torch.nn.functional.softplus(torch.randn(B, T, H, device="cuda", generator=g) - 2)
    A = -torch.exp(torch.randn(H, device="cuda", generator=g) * 0.5)
    gy = torch.randn(B, T, H, P, **bf)
    if name == "mamba_chunk_scan_combined":
        def fwd(req=False):
            ins = [t.detach().requires_grad_(req) for t in (x, dt, A, Bm, Cm)]
            return fn(ins[0], ins[1], ins[2], ins[3], ins[4], chunk_size=256)
    elif name == "fla_chunk_simple_gla":
        v = (x.float() * dt.unsqueeze(-1)).to(torch.bfloat16)
        gl = (A * dt).float()

        def fwd(req=False):
            q, k, vv, gg = [t.detach().requires_grad_(req) for t in (Cm, Bm, v, gl)]
            o = fn(q, k, vv, g=gg, scale=1.0)
            return o[0] if isinstance(o, tuple) else o
    else:
        def fwd(req=False):
            q, k, vv = [t.detach().requires_grad_(req) for t in (Cm, Bm, x)]
            o = fn(q, k, vv, scale=1.0, normalize=True)
            return o[0] if isinstance(o, tuple) else o

    def fwd_only():
        with torch.no_grad():
            fwd(False)

    def fwd_bwd():
        y = fwd(True)
        y.backward(gy)

    return fwd_only, fwd_bwd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", default=".peers")
    ap.add_argument("--ours", default="", help="JSON lines from bench_scan_cuda")
    ap.add_argument("--out", default="", help="write JSON lines here too")
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--H", type=int, default=8)
    ap.add_argument("--P", type=int, default=256)
    ap.add_argument("--shapes", default="16384:128,8192:128,2048:128,8192:64,8192:256",
                    help="T:N pairs for the peers")
    ap.add_argument("--no-backward", action="store_true")
    ap.add_argument("--budget-s", type=float, default=240)
    a = ap.parse_args()
    t_start = time.time()
    dev = torch.cuda.get_device_name(0)
    ceiling = copy_ceiling_tbps()
    print(f"# device {dev}; torch {torch.__version__}; copy ceiling {ceiling:.3f} TB/s (read+write)", flush=True)
    rows = []
    if a.ours and os.path.exists(a.ours):
        with open(a.ours) as f:
            for line in f:
                if line.startswith("{"):
                    rows.append(json.loads(line))
    peers = load_peers(os.path.abspath(a.peers))
    shapes = [tuple(int(v) for v in s.split(":")) for s in a.shapes.split(",") if s]
    # Forwards first (cheap autotuning), then forward+backward with what is left of the budget.
    calls = {}
    for T, N in shapes:
        for name, fn in peers.items():
            row = dict(op=name, B=a.B, T=T, H=a.H, P=a.P, N=N)
            rows.append(row)
            if time.time() - t_start > a.budget_s:
                row["fwd_error"] = "not measured (time budget)"
                continue
            try:
                fo, fb = make_calls(name, fn, a.B, T, a.H, a.P, N)
                row["fwd_ms"] = median_ms(fo)
                row["fwd_min_bytes"] = 2.0 * a.B * a.H * T * (2 * a.P + 2 * N + 1) + 4.0 * a.B * a.H * T
                row["fwd_TBps"] = row["fwd_min_bytes"] / (row["fwd_ms"] * 1e-3) / 1e12
                calls[id(row)] = fb
            except Exception as e:  # noqa: BLE001
                row["fwd_error"] = f"{type(e).__name__}: {str(e)[:200]}"
            print(json.dumps(row), flush=True)
            torch.cuda.empty_cache()
    if not a.no_backward:
        for row in rows:
            if id(row) not in calls:
                continue
            if time.time() - t_start > a.budget_s:
                row["fwdbwd_error"] = "not measured (time budget)"
                continue
            try:
                row["fwdbwd_ms"] = median_ms(calls[id(row)], 2, 7)
            except Exception as e:  # noqa: BLE001
                row["fwdbwd_error"] = f"{type(e).__name__}: {str(e)[:200]}"
            print(json.dumps(row), flush=True)
            torch.cuda.empty_cache()
    if a.out:
        with open(a.out, "w") as f:
            f.write(json.dumps(dict(device=dev, torch=torch.__version__, copy_TBps=ceiling,
                                    date=time.strftime("%Y-%m-%d"))) + "\n")
            for r in rows:
                f.write(json.dumps(r) + "\n")
    # The table: one line per shape and op.
    print(f"\n| op | T | N | fwd ms | fwd TB/s (% of {ceiling:.2f}) | fwd+bwd ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in sorted(rows, key=lambda r: (r["N"], r["T"], r["op"])):
        fwd = f'{r["fwd_ms"]:.3f}' if "fwd_ms" in r else r.get("fwd_error", "-")[:40]
        bw = (f'{r["fwd_TBps"]:.2f} ({100 * r["fwd_TBps"] / ceiling:.0f}%)' if "fwd_TBps" in r else "-")
        fb = f'{r["fwdbwd_ms"]:.3f}' if "fwdbwd_ms" in r else r.get("fwdbwd_error", "-")[:40]
        print(f'| {r["op"]} | {r["T"]} | {r["N"]} | {fwd} | {bw} | {fb} |')


if __name__ == "__main__":
    main()
