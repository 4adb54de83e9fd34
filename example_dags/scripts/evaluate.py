# /// script
# requires-python = ">=3.10"
# dependencies = []
# ///
"""A stand-in evaluation: reads the checkpoint the training job wrote to the bucket."""

import argparse
import json
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--checkpoint", required=True)
args = parser.parse_args()

state = json.loads((Path(args.checkpoint) / "state.json").read_text())
print(f"loaded checkpoint {args.checkpoint}: epoch {state['epoch']}, loss={state['loss']:.4f}", flush=True)
