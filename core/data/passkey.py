"""Passkey retrieval samples: the long-context test of the LongLoRA paper (after Mohtashami & Jaggi, 2023).

A random five-digit number is hidden at a random depth in repeated filler text and asked for at the
end; a model can only answer if it carries the number across the whole context. Samples are alpaca
rows (instruction/output), deterministic for a given seed, so the ordinary data pipeline loads them.

    python -m core.data.passkey --samples 24 --tokens 2048 --seed 0 --out data/passkey.json

writes the file whole (temp + rename). `--tokens` sizes the prompt with the bundled tokenizer's count
for the filler (about 24 tokens per filler sentence); another tokenizer gives somewhat different lengths.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

INTRO = "There is an important piece of information hidden inside a lot of irrelevant text. Find it and memorise it.\n"
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
QUESTION = "\nWhat is the pass key?"
# Tokens taken by one FILLER with the bundled SmolLM2 tokenizer, and by the rest of the prompt, the
# answer and the chat template around them; used to turn a token budget into filler repeats.
FILLER_TOKENS = 24
OVERHEAD_TOKENS = 100


def needle(key: int) -> str:
    return f"The pass key is {key}. Remember it. {key} is the pass key. "


def passkey_row(key: int, repeats: int, depth: int) -> dict:
    """One sample: `repeats` filler sentences with the needle after the first `depth` of them."""
    text = INTRO + FILLER * depth + needle(key) + FILLER * (repeats - depth) + QUESTION
    return {"instruction": text, "output": f"The pass key is {key}."}


def passkey_rows(samples: int, tokens: int, seed: int = 0) -> list[dict]:
    """`samples` rows of about `tokens` tokens each (prompt, answer and template together)."""
    rng = random.Random(seed)
    repeats = max((tokens - OVERHEAD_TOKENS) // FILLER_TOKENS, 1)
    return [passkey_row(rng.randint(10000, 99999), repeats, rng.randint(0, repeats)) for _ in range(samples)]


def write_rows(rows: list[dict], out: Path) -> None:
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.data.passkey", description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--tokens", type=int, default=2048, help="approximate tokens per sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    write_rows(passkey_rows(args.samples, args.tokens, args.seed), args.out)
    print(f"wrote {args.samples} passkey samples of about {args.tokens} tokens to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
