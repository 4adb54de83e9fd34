"""The flavor table the local server answers ``GET /api/jobs/hardware`` with.

Names are ``huggingface_hub`` 2.4's ``JobHardware``; specs and prices follow the Hub's pricing page
(per-minute unit cost in micro-USD, as the API reports it).
"""

from __future__ import annotations

from typing import Any

from airflow_provider_hfjobs.jobs import KNOWN_FLAVORS

# name: (pretty name, cpu, ram, storage, (gpu model, count, vram) or None, USD per hour)
_TABLE: dict[str, tuple[str, str, str, str, tuple[str, int, str] | None, float]] = {
    "cpu-basic": ("CPU Basic", "2 vCPU", "16 GB", "50 GB", None, 0.01),
    "cpu-upgrade": ("CPU Upgrade", "8 vCPU", "32 GB", "50 GB", None, 0.03),
    "cpu-performance": ("CPU Performance", "32 vCPU", "256 GB", "400 GB", None, 0.80),
    "cpu-xl": ("CPU XL", "16 vCPU", "124 GB", "400 GB", None, 1.00),
    "t4-small": ("Nvidia T4 - small", "4 vCPU", "15 GB", "50 GB", ("T4", 1, "16 GB"), 0.40),
    "t4-medium": ("Nvidia T4 - medium", "8 vCPU", "30 GB", "100 GB", ("T4", 1, "16 GB"), 0.60),
    "l4x1": ("1x Nvidia L4", "8 vCPU", "30 GB", "400 GB", ("L4", 1, "24 GB"), 0.80),
    "l4x4": ("4x Nvidia L4", "48 vCPU", "186 GB", "3200 GB", ("L4", 4, "96 GB"), 3.80),
    "l40sx1": ("1x Nvidia L40S", "8 vCPU", "62 GB", "380 GB", ("L40S", 1, "48 GB"), 1.80),
    "l40sx4": ("4x Nvidia L40S", "48 vCPU", "382 GB", "3200 GB", ("L40S", 4, "192 GB"), 8.30),
    "l40sx8": ("8x Nvidia L40S", "192 vCPU", "1534 GB", "6500 GB", ("L40S", 8, "384 GB"), 23.50),
    "a10g-small": ("Nvidia A10G - small", "4 vCPU", "15 GB", "110 GB", ("A10G", 1, "24 GB"), 1.00),
    "a10g-large": ("Nvidia A10G - large", "12 vCPU", "46 GB", "200 GB", ("A10G", 1, "24 GB"), 1.50),
    "a10g-largex2": ("2x Nvidia A10G - large", "24 vCPU", "92 GB", "1000 GB", ("A10G", 2, "48 GB"), 3.00),
    "a10g-largex4": ("4x Nvidia A10G - large", "48 vCPU", "184 GB", "2000 GB", ("A10G", 4, "96 GB"), 5.00),
    "a100-large": ("Nvidia A100 - large", "12 vCPU", "142 GB", "1000 GB", ("A100", 1, "80 GB"), 2.50),
    "a100x4": ("4x Nvidia A100", "48 vCPU", "568 GB", "4000 GB", ("A100", 4, "320 GB"), 10.00),
    "a100x8": ("8x Nvidia A100", "96 vCPU", "1136 GB", "8000 GB", ("A100", 8, "640 GB"), 20.00),
    "h200": ("Nvidia H200", "23 vCPU", "256 GB", "3000 GB", ("H200", 1, "141 GB"), 5.00),
    "h200x2": ("2x Nvidia H200", "46 vCPU", "512 GB", "6000 GB", ("H200", 2, "282 GB"), 10.00),
    "h200x4": ("4x Nvidia H200", "92 vCPU", "1024 GB", "12000 GB", ("H200", 4, "564 GB"), 20.00),
    "h200x8": ("8x Nvidia H200", "184 vCPU", "2048 GB", "24000 GB", ("H200", 8, "1128 GB"), 40.00),
    "rtx-pro-6000": (
        "Nvidia RTX PRO 6000",
        "23 vCPU",
        "184 GB",
        "1500 GB",
        ("RTX PRO 6000", 1, "96 GB"),
        2.00,
    ),
    "rtx-pro-6000x2": (
        "2x Nvidia RTX PRO 6000",
        "46 vCPU",
        "368 GB",
        "3000 GB",
        ("RTX PRO 6000", 2, "192 GB"),
        4.00,
    ),
    "rtx-pro-6000x4": (
        "4x Nvidia RTX PRO 6000",
        "92 vCPU",
        "736 GB",
        "6000 GB",
        ("RTX PRO 6000", 4, "384 GB"),
        8.00,
    ),
    "rtx-pro-6000x8": (
        "8x Nvidia RTX PRO 6000",
        "184 vCPU",
        "1472 GB",
        "12000 GB",
        ("RTX PRO 6000", 8, "768 GB"),
        16.00,
    ),
}
assert set(_TABLE) == set(KNOWN_FLAVORS), "the hardware table must cover every known flavor"


def hardware_entry(name: str) -> dict[str, Any]:
    pretty, cpu, ram, storage, gpu, per_hour = _TABLE[name]
    per_minute_micro = round(per_hour / 60 * 1_000_000)
    accelerator = None
    if gpu is not None:
        model, quantity, vram = gpu
        accelerator = {
            "type": "gpu",
            "model": model,
            "quantity": str(quantity),
            "vram": vram,
            "manufacturer": "Nvidia",
        }
    return {
        "name": name,
        "prettyName": pretty,
        "cpu": cpu,
        "ram": ram,
        "ephemeralStorage": storage,
        "accelerator": accelerator,
        "unitCostMicroUSD": per_minute_micro,
        "unitCostUSD": per_minute_micro / 1_000_000,
        "unitLabel": "minute",
    }


HARDWARE: list[dict[str, Any]] = [hardware_entry(name) for name in KNOWN_FLAVORS]
FLAVORS = frozenset(KNOWN_FLAVORS)
