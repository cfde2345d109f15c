#!/usr/bin/env python3
"""Checks, on a machine with transformers and tokenizers, that what HedgeLab writes is what Hugging Face reads.

    python3 scripts/check_hf_compat.py HEDGELAB_CLI CHECKPOINT_DIR TEXT_FILE

For a checkpoint folder written by `hedgelab-cli pretrain` (or any GPT-NeoX folder): transformers'
GPTNeoXForCausalLM and tokenizers load it; token ids agree with `hedgelab-cli tokenize`; held-out perplexity of
the text file under the §5 protocol agrees with `hedgelab-cli eval --split all`; greedy continuations agree
with `hedgelab-cli generate`. Prints one JSON object; exits 1 on any disagreement.
"""
import json
import math
import subprocess
import sys

import torch
from tokenizers import Tokenizer
from transformers import GPTNeoXForCausalLM


def cli_json(cli, *args):
    out = subprocess.run([cli, *args, "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    cli, ckpt, text_file = sys.argv[1:4]
    context = 64
    tok = Tokenizer.from_file(f"{ckpt}/tokenizer.json")
    model = GPTNeoXForCausalLM.from_pretrained(ckpt, torch_dtype=torch.float32).eval()
    report = {"checkpoint": ckpt, "ok": True, "failures": []}

    samples = ["In the beginning God created the heaven and the earth.", "", "  two  spaces\tand tab\n",
               "Ünïcödé ✓ 😀", "<|endoftext|>after"]
    for s in samples:
        ours = cli_json(cli, "tokenize", "--checkpoint", ckpt, "--text", s)["ids"]
        theirs = tok.encode(s).ids
        if ours != theirs:
            report["failures"].append({"tokenize": s, "hedgelab": ours, "tokenizers": theirs})

    text = open(text_file, encoding="utf-8").read()
    ids = tok.encode(text).ids
    eos = tok.token_to_id("<|endoftext|>")
    if eos is not None:
        ids.append(eos)  # HedgeLab's corpora end every document with EOS when the tokenizer has one
    stream = torch.tensor(ids)
    nll, count = 0.0, 0
    with torch.no_grad():
        for s in range(0, stream.numel() - context, context):
            w = stream[s:s + context + 1]
            if w.numel() < context + 1:
                break
            logits = model(input_ids=w[None, :-1]).logits[0].double()
            nll += torch.nn.functional.cross_entropy(logits, w[1:], reduction="sum").item()
            count += context
    hf_ppl = math.exp(nll / count)
    ours = cli_json(cli, "eval", "--checkpoint", ckpt, "--corpus", text_file, "--split", "all", "--context",
                    str(context))
    report["perplexity"] = {"hedgelab": ours["perplexity"], "transformers": hf_ppl, "tokens": count,
                            "hedgelab_tokens": ours["tokens"]}
    if abs(ours["perplexity"] - hf_ppl) / hf_ppl > 1e-4 or ours["tokens"] != count:
        report["failures"].append({"perplexity": report["perplexity"]})

    prompt = "And God said"
    ours = cli_json(cli, "generate", "--checkpoint", ckpt, "--prompt", prompt, "--max-new", "24")["ids"]
    seq = torch.tensor([tok.encode(prompt).ids])
    with torch.no_grad():
        for _ in range(24):
            seq = torch.cat([seq, model(input_ids=seq).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    theirs = seq[0, -24:].tolist()
    # HedgeLab stops at EOS; compare the common prefix length it produced.
    if ours != theirs[:len(ours)]:
        report["failures"].append({"generate": prompt, "hedgelab": ours, "transformers": theirs})
    report["greedy_text"] = tok.decode(theirs)

    report["ok"] = not report["failures"]
    print(json.dumps(report, indent=1, ensure_ascii=False))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
