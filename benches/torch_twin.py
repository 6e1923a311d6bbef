"""PyTorch twin of `aigc bench` for the nanoGPT presets.

The model is nanoGPT's (Karpathy, model.py, bias=True, dropout 0): learned positions,
LayerNorm with bias, exact GELU, fused qkv, scaled_dot_product_attention, head tied to the
token embedding. Training uses the same optimizer as aigc (AdamW 1e-3, betas 0.9/0.99,
weight decay 0.1 on matrices and embeddings, global-norm clipping 1.0) on random windows of
tiny Shakespeare; generation is greedy, batch 1, with a KV cache and the same sliding window
as aigc (when the context is full, re-encode its newest half).

    python3 benches/torch_twin.py train --preset nanogpt-small
    python3 benches/torch_twin.py generate --preset nanogpt-big

The last line has the same shape as aigc's: `tokens_per_s=<x> peak_rss_mb=<y>`.
"""

import argparse
import math
import resource
import statistics
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "nanogpt-small": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12),
    "nanogpt-big": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=8),
}
DATA = Path(__file__).resolve().parent.parent / "datasets/tinyshakespeare/input.txt"


class SelfAttention(nn.Module):
    def __init__(self, d, n_head):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)

    def forward(self, x, cache=None):
        b, t, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2) for z in (q, k, v))
        causal = True
        if cache is not None:
            if cache.get("k") is not None:
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
                causal = t > 1  # one new query attends to everything cached
            cache["k"], cache["v"] = k, v
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, d))


class Block(nn.Module):
    def __init__(self, d, n_head):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = SelfAttention(d, n_head)
        self.ln_2 = nn.LayerNorm(d)
        self.c_fc = nn.Linear(d, 4 * d)
        self.c_proj = nn.Linear(4 * d, d)

    def forward(self, x, cache=None):
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x))))


class GPT(nn.Module):
    def __init__(self, vocab, n_layer, n_head, n_embd, block_size):
        super().__init__()
        self.block_size = block_size
        self.wte = nn.Embedding(vocab, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.h = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, 0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx, caches=None, start=0):
        t = idx.shape[1]
        pos = torch.arange(start, start + t)
        x = self.wte(idx) + self.wpe(pos)
        for i, block in enumerate(self.h):
            x = block(x, None if caches is None else caches[i])
        return self.ln_f(x) @ self.wte.weight.T  # tied head


def corpus():
    text = DATA.read_text(encoding="utf-8")
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    data = torch.tensor([index[c] for c in text], dtype=torch.long)
    return data[: int(0.9 * len(data))], vocab


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_train(cfg, steps, warmup):
    train, vocab = corpus()
    torch.manual_seed(1337)
    model = GPT(len(vocab), cfg["n_layer"], cfg["n_head"], cfg["n_embd"], cfg["block_size"])
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optim = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-3,
        betas=(0.9, 0.99),
        eps=1e-8,
    )
    b, t = cfg["batch_size"], cfg["block_size"]
    times = []
    for step in range(warmup + steps):
        started = time.perf_counter()
        ix = torch.randint(len(train) - t, (b,))
        x = torch.stack([train[i : i + t] for i in ix])
        y = torch.stack([train[i + 1 : i + 1 + t] for i in ix])
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        loss.item()
        forward = time.perf_counter()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        backward = time.perf_counter()
        optim.step()
        optim.zero_grad(set_to_none=True)
        done = time.perf_counter()
        if step >= warmup:
            times.append((forward - started, backward - forward, done - backward, done - started))
    med = [statistics.median(col) * 1e3 for col in zip(*times)]
    params = sum(p.numel() for p in model.parameters())
    print(f"preset params={params} units_per_step={b * t} threads={torch.get_num_threads()}")
    print(
        f"step ms (median of {steps}): total {med[3]:.1f} = forward {med[0]:.1f}"
        f" + backward {med[1]:.1f} + optimizer {med[2]:.1f}"
    )
    print(f"tokens_per_s={b * t / (med[3] / 1e3):.1f} peak_rss_mb={peak_rss_mb():.0f}")


@torch.inference_mode()
def generate(model, prompt, count):
    context = model.block_size
    tokens = list(prompt)
    pending = list(tokens)
    caches = [dict() for _ in model.h]
    cached = 0
    for _ in range(count):
        if cached + len(pending) > context:
            caches = [dict() for _ in model.h]
            cached = 0
            pending = tokens[len(tokens) - context // 2 :]
        logits = model(torch.tensor([pending]), caches, start=cached)
        cached += len(pending)
        nxt = int(logits[0, -1].argmax())
        tokens.append(nxt)
        pending = [nxt]
    return tokens


def bench_generate(cfg, count, runs):
    _, vocab = corpus()
    torch.manual_seed(1337)
    model = GPT(len(vocab), cfg["n_layer"], cfg["n_head"], cfg["n_embd"], cfg["block_size"])
    model.eval()
    prompt = [vocab.index("\n")]
    generate(model, prompt, count)
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        generate(model, prompt, count)
        seconds.append(time.perf_counter() - started)
    print(f"preset tokens_per_run={count} runs={runs} threads={torch.get_num_threads()}")
    print("run seconds: " + " ".join(f"{s:.3f}" for s in seconds))
    print(f"tokens_per_s={count / statistics.median(seconds):.1f} peak_rss_mb={peak_rss_mb():.0f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["train", "generate"])
    parser.add_argument("--preset", choices=sorted(PRESETS), required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--count", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = PRESETS[args.preset]
    if args.mode == "train":
        bench_train(cfg, args.steps, args.warmup)
    else:
        bench_generate(cfg, args.count, args.runs)


if __name__ == "__main__":
    main()
