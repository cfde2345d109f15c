#!/usr/bin/env python3
"""Where one recipe step's GPU time goes, by the op that launched it: reads a Kineto trace that
`bench_gpu_recipe_step --trace DIR` saved (Chrome trace JSON: CPU ops, HedgeLab's user scopes, CUDA runtime
calls and kernels) and prints

  * the GPU's busy time (the union of kernel, copy and fill intervals) against the span from the first to the
    last of them: the rest is the GPU waiting for the host;
  * what ran outside the step (launched outside HedgeLab's scopes and the autograd engine), apart;
  * the kernel time per step part: HedgeLab's scopes (hedgelab::teacher_forward, ::student_forward, ::adamw,
    ::grad_norm) on the step's thread, "backward" for what the autograd engine's threads launched;
  * the kernel time per (part, op): the outermost ATen op under the part (forward) or the autograd node
    (backward) with the innermost op that launched the kernel;
  * the kernel time per kernel name.

Each kernel is tied to its launch by the trace's correlation id and to the ops around the launch by time on
the launching thread. Times are the kernels' own durations (they do not overlap on one stream).

Usage: gpu_trace_summary.py TRACE.json [--top 40]
"""
import argparse
import bisect
import collections
import json
import sys

GPU_CATS = {"kernel", "gpu_memcpy", "gpu_memset"}
CPU_CATS = {"cpu_op", "user_annotation"}


def load(path):
    with open(path) as f:
        data = json.load(f)
    return data["traceEvents"] if isinstance(data, dict) else data


def short(name, n=90):
    name = name.split("(")[0] if name.startswith("void ") or "<" in name else name
    return name if len(name) <= n else name[: n - 3] + "..."


class Nesting:
    """The CPU events of one thread, to find the chain of events around a time stamp."""

    def __init__(self, events):
        self.events = sorted(events, key=lambda e: (e["ts"], -e.get("dur", 0)))
        self.starts = [e["ts"] for e in self.events]
        # parent index of each event (the innermost earlier event that contains it)
        self.parent = []
        stack = []
        for i, e in enumerate(self.events):
            end = e["ts"] + e.get("dur", 0)
            while stack and self.events[stack[-1]]["ts"] + self.events[stack[-1]].get("dur", 0) < end:
                stack.pop()
            self.parent.append(stack[-1] if stack else -1)
            stack.append(i)

    def chain(self, ts):
        """Outermost-first names of the events containing ts."""
        i = bisect.bisect_right(self.starts, ts) - 1
        # walk back to an event that contains ts, then up the parents
        while i >= 0:
            e = self.events[i]
            if e["ts"] <= ts <= e["ts"] + e.get("dur", 0):
                break
            i = self.parent[i]
        out = []
        while i >= 0:
            out.append(self.events[i])
            i = self.parent[i]
        return out[::-1]


def union_ms(intervals):
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total / 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    events = [e for e in load(args.trace) if e.get("ph") == "X"]
    gpu = [e for e in events if e.get("cat") in GPU_CATS]
    if not gpu:
        sys.exit(f"{args.trace}: no kernel events (was the trace taken with CUDA activities?)")
    cpu_by_thread = collections.defaultdict(list)
    launches = {}
    for e in events:
        cat = e.get("cat")
        if cat in CPU_CATS:
            cpu_by_thread[(e.get("pid"), e.get("tid"))].append(e)
        elif cat in ("cuda_runtime", "cuda_driver"):
            c = e.get("args", {}).get("correlation")
            if c is not None:
                launches[c] = e
    nest = {k: Nesting(v) for k, v in cpu_by_thread.items()}

    # Tie every GPU activity to its launch; those launched outside the step's scopes and the autograd engine
    # (the run's pause checkpoint copying weights and moments to the host, which the traced run() ends with)
    # are reported apart and left out of the step's numbers.
    tied = []
    outside = collections.defaultdict(lambda: [0.0, 0])
    for k in gpu:
        launch = launches.get(k.get("args", {}).get("correlation"))
        key = (launch["pid"], launch["tid"]) if launch else None
        names = [c["name"] for c in nest[key].chain(launch["ts"])] if key in nest else []
        node = next((n for n in names if n.startswith("autograd::engine::evaluate_function")), None)
        scopes = [n for n in names if n.startswith("hedgelab::")]
        if not node and not scopes:
            entry = outside[f"{names[0] if names else '(no op)'} | {short(k['name'])}"]
            entry[0] += k["dur"] / 1e3
            entry[1] += 1
            continue
        tied.append((k, names, node, scopes))
    if not tied:
        sys.exit(f"{args.trace}: no GPU activity inside the step's scopes")
    step = [k for k, _, _, _ in tied]
    span = (max(e["ts"] + e["dur"] for e in step) - min(e["ts"] for e in step)) / 1e3
    busy = union_ms([(e["ts"], e["ts"] + e["dur"]) for e in step])
    total = sum(e["dur"] for e in step) / 1e3
    print(f"{args.trace}: {len(step)} GPU activities in the step, {total:.2f} ms of kernel time; GPU busy "
          f"{busy:.2f} ms of the step's {span:.2f} ms span ({100 * busy / span:.1f}%)")
    if outside:
        ms = sum(v[0] for v in outside.values())
        n = sum(v[1] for v in outside.values())
        top = max(outside.items(), key=lambda x: x[1][0])[0]
        print(f"outside the step (not counted): {ms:.2f} ms in {n} activities, most of it {top}")

    by_part = collections.defaultdict(lambda: [0.0, 0])
    by_op = collections.defaultdict(lambda: [0.0, 0])
    by_kernel = collections.defaultdict(lambda: [0.0, 0])
    for k, names, node, scopes in tied:
        ms = k["dur"] / 1e3
        if node:
            part = "backward"
            outer = node.replace("autograd::engine::evaluate_function: ", "")
        else:
            part = scopes[0]
            after = [n for n in names[names.index(part) + 1:] if not n.startswith("hedgelab::")]
            outer = after[0] if after else "(no op)"
        leaf = names[-1] if names else "(no op)"
        for table, key in ((by_part, part), (by_op, (part, outer, leaf)), (by_kernel, short(k["name"]))):
            table[key][0] += ms
            table[key][1] += 1

    def show(title, table, fmt):
        print(f"\n== {title}")
        for key, (ms, n) in sorted(table.items(), key=lambda x: -x[1][0])[: args.top]:
            print(f"{ms:9.2f} ms {100 * ms / total:5.1f}% {n:6d}x  {fmt(key)}")

    show("by step part", by_part, lambda k: k)
    show("by part, outer op / node, launching op", by_op, lambda k: f"{k[0]} | {k[1]} | {k[2]}")
    show("by kernel", by_kernel, lambda k: k)


if __name__ == "__main__":
    main()
