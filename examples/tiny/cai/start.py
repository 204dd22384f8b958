"""Save the tiny example's starting policy: the 2-layer, 64-wide Llama that examples/tiny/dpo.yaml builds (no
download), as an ordinary model folder, so SFT starts from it and the win rate is measured against it.

    python examples/tiny/cai/start.py [OUT]        (default runs/tiny-cai/start; run from the repository root)
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def save_start(out: Path) -> Path:
    from rlaif.config.train import load_train_config
    from rlaif.train.models import build_tiny, build_tokenizer

    model = load_train_config(HERE.parent / "dpo.yaml", "dpo").model
    tokenizer = build_tokenizer(model)
    build_tiny(model, tokenizer, "lm").save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


if __name__ == "__main__":
    print(f"starting policy saved to {save_start(Path(sys.argv[1] if len(sys.argv) > 1 else 'runs/tiny-cai/start'))}")
