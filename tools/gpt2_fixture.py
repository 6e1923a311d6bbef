"""Writes tests/fixtures/gpt2-tiny: a tiny random GPT-2 in Hugging Face's file layout
(config.json, model.safetensors, tokenizer.json) and what `transformers` computes with it
(reference.json: token ids, last-position logits, greedy continuation), so a Rust test can
check aigc's GPT-2 import without network access.

    python3 -m pip install "transformers>=4.40,<5" torch
    python3 tools/gpt2_fixture.py                     # writes the fixture
    python3 tools/gpt2_fixture.py --check-export DIR  # DIR from `aigc export --format gpt2`

`--check-export` loads an export of the imported fixture with `transformers` and prints how far
its logits are from the fixture's (aigc import -> export -> transformers: about 5e-7).

The tokenizer is a byte-level BPE trained here on the first 20 kB of tinyshakespeare (GPT-2's
own 50k vocabulary would make the fixture megabytes large); the model is GPT-2's code with
2 layers, 4 heads, width 32 and GPT-2's defaults otherwise (tanh GELU, tied head).
"""

import json
import sys
from pathlib import Path

import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "gpt2-tiny"
PROMPTS = ["ROMEO:", "First Citizen:\nBefore we proceed", "what say you? é ü"]
GREEDY_PROMPT = "KING RICHARD:"
GREEDY_TOKENS = 24


def check_export(folder):
    model = GPT2LMHeadModel.from_pretrained(folder).eval()
    reference = json.loads((OUT / "reference.json").read_text())
    with torch.no_grad():
        for prompt in reference["prompts"]:
            logits = model(torch.tensor([prompt["ids"]])).logits[0, -1]
            diff = float((logits - torch.tensor(prompt["logits"])).abs().max())
            print(f"{prompt['text']!r}: max |logit difference| {diff:.2e}")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--check-export":
        return check_export(sys.argv[2])
    OUT.mkdir(parents=True, exist_ok=True)
    text = (ROOT / "datasets" / "tinyshakespeare" / "input.txt").read_text()[:20_000]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([text], vocab_size=320, min_frequency=2,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    tokenizer = GPT2TokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>",
                                  eos_token="<|endoftext|>", unk_token="<|endoftext|>")

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2,
                        n_head=4)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # larger weights than GPT-2's init, so logits differ clearly
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    model.save_pretrained(OUT, safe_serialization=True)
    tokenizer.backend_tokenizer.save(str(OUT / "tokenizer.json"))

    reference = {"prompts": [], "greedy": {}}
    with torch.no_grad():
        for prompt in PROMPTS:
            ids = tokenizer(prompt)["input_ids"]
            logits = model(torch.tensor([ids])).logits[0]
            reference["prompts"].append({
                "text": prompt,
                "ids": ids,
                "logits": [round(float(x), 6) for x in logits[-1]],
                "first_logits": [round(float(x), 6) for x in logits[0]],
            })
        ids = tokenizer(GREEDY_PROMPT)["input_ids"]
        out = model.generate(torch.tensor([ids]), max_new_tokens=GREEDY_TOKENS, do_sample=False,
                             pad_token_id=0)
        reference["greedy"] = {"text": GREEDY_PROMPT, "ids": ids,
                               "generated": out[0, len(ids):].tolist()}
    (OUT / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")
    (OUT / "generation_config.json").unlink(missing_ok=True)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
