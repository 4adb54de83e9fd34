# /// script
# requires-python = ">=3.10"
# dependencies = []
# ///
"""A stand-in training script: parses its arguments and "trains" for a few epochs.

On Hugging Face Jobs this would import torch/transformers (list them above or in ``dependencies=``);
kept dependency-free so the example also runs on the local Jobs server with no network.
"""

import argparse
import json
import math
import os
import random
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--lr", type=float, default=3e-4)
parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M")
parser.add_argument("--output", default="trained-model")
parser.add_argument("--data", default=None, help="a mounted dataset to read")
args = parser.parse_args()

if args.data:
    files = sorted(path for path in Path(args.data).rglob("*") if path.is_file())
    print(f"dataset at {args.data}: {len(files)} files", flush=True)

random.seed(0)
print(f"training {args.model} for {args.epochs} epochs at lr={args.lr}", flush=True)
print(f"HF token available: {'HF_TOKEN' in os.environ}", flush=True)
loss = 2.5
for epoch in range(1, args.epochs + 1):
    loss *= math.exp(-args.lr * 1000) * (0.9 + random.random() * 0.05)
    time.sleep(1)  # the stand-in for an epoch's work
    print(f"epoch {epoch}/{args.epochs} loss={loss:.4f}", flush=True)
output = Path(args.output)
output.mkdir(parents=True, exist_ok=True)  # a mounted bucket keeps it for the next job
(output / "state.json").write_text(json.dumps({"epoch": args.epochs, "loss": loss}))
print(f"saved to {args.output}", flush=True)
