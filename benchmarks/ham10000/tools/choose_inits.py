#!/usr/bin/env python
"""Pick the pretrained encoders that go on to full fine-tuning, from the screening probe
(tools/knn_probe.py on the *validation* split): the best ``--scratch`` encoders pretrained
from random weights and the best ``--continued`` ones continued from ImageNet, ranked by
linear-probe balanced accuracy (the kNN figure breaks ties). By default the probe with
BatchNorm statistics re-estimated on training images (``adabn``): fine-tuning re-estimates
them anyway, so that probe measures what the pretrained weights bring. Prints their checkpoints,
comma-separated, for ``ssl-derm benchmark --inits``, and writes the ranking to ``--record``.

    python benchmarks/ham10000/tools/choose_inits.py runs/ham10000_cpu/screening/probe.json \
        --checkpoints runs/ham10000_cpu/pretrain/*/ssl.ckpt --scratch 1 --continued 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ssl_derm.checkpoint import init_name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("probe", help="probe.json of tools/knn_probe.py (validation queries)")
    ap.add_argument("--checkpoints", nargs="+", required=True, help="the screened ssl.ckpt files")
    ap.add_argument("--scratch", type=int, default=1, help="how many encoders pretrained from random weights")
    ap.add_argument("--continued", type=int, default=2, help="how many continued from ImageNet")
    ap.add_argument("--statistics", choices=["adabn", "stored"], default="adabn", help="BatchNorm statistics probed")
    ap.add_argument("--record", help="write the ranking and the choice here (JSON)")
    args = ap.parse_args()
    probe = json.loads(Path(args.probe).read_text())
    if "validation" not in probe["meta"]["queries"]:
        raise SystemExit(f"{args.probe}: probed on {probe['meta']['queries']}; choose on validation only")
    lp, knn = f"linear_probe_{args.statistics}", f"knn_{args.statistics}"
    scores = {r["init"]: (r[lp], r[knn]) for r in probe["results"]}
    # a checkpoint not on this machine (the protocol pretrains it again if chosen) is named by its folder
    by_name = {(init_name(c) if Path(c).is_file() else Path(c).parent.name): c for c in args.checkpoints}
    missing = [n for n in by_name if n not in scores]
    if missing:
        raise SystemExit(f"not in {args.probe}: {', '.join(missing)} (probe every screened checkpoint)")
    continued = sorted((n for n in by_name if n.startswith("imagenet+")), key=scores.get, reverse=True)
    scratch = sorted((n for n in by_name if not n.startswith("imagenet+")), key=scores.get, reverse=True)
    chosen = scratch[: args.scratch] + continued[: args.continued]
    if args.record:
        ranking = {
            group: [{"init": n, "linear_probe": scores[n][0], "knn": scores[n][1]} for n in names]
            for group, names in (("scratch", scratch), ("continued", continued))
        }
        on = f"validation split, linear probe then kNN, {args.statistics} BatchNorm statistics"
        record = {"on": on, "chosen": chosen, "ranking": ranking}
        Path(args.record).write_text(json.dumps(record, indent=2) + "\n")
    print(",".join(str(by_name[n]) for n in chosen))


if __name__ == "__main__":
    main()
