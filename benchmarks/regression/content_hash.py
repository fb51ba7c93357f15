"""sha256 (first 16 hex digits) of each checkpoint's content: every tensor's bytes and every
other value, keys sorted, skipping fields that record when a run happened. Checkpoint files
differ byte-wise between two runs of the same code (the zip container), so same_results.sh
compares this instead.

    python benchmarks/regression/content_hash.py runs/x/ssl.ckpt runs/x/model.ckpt
"""

import hashlib
import sys

import torch

SKIP = {"created", "created_at", "timestamp", "wall_s", "hostname", "time"}


def walk(h, obj, path: str = "") -> None:
    if isinstance(obj, dict):
        for k in sorted(obj, key=str):
            if str(k) not in SKIP:
                walk(h, obj[k], f"{path}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            walk(h, v, f"{path}/{i}")
    elif torch.is_tensor(obj):
        h.update(path.encode())
        h.update(obj.detach().cpu().contiguous().numpy().tobytes())
    else:
        h.update(path.encode())
        h.update(repr(obj).encode())


if __name__ == "__main__":
    for f in sys.argv[1:]:
        h = hashlib.sha256()
        walk(h, torch.load(f, map_location="cpu", weights_only=True))
        print(h.hexdigest()[:16], f)
