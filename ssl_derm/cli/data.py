"""``ssl-derm data``: inspect a source or write its lesion-grouped splits."""

from __future__ import annotations

from ssl_derm.cli.flags import call_with
from ssl_derm.errors import UserError


def add(sub) -> None:
    d = sub.add_parser("data", help="inspect a source or write its lesion-grouped splits")
    dsub = d.add_subparsers(dest="data_command", metavar="ACTION")
    di = dsub.add_parser("inspect", help="images, classes, groups and unreadable files of a source")
    di.add_argument("path", nargs="?", help="HAM10000 folder, CSV, ImageFolder, or an unlabelled archive")
    di.add_argument("--json", dest="as_json", action="store_true", help="print one JSON object")
    ds = dsub.add_parser("split", help="write DIR/splits.csv (group-aware, stratified)")
    ds.add_argument("path", nargs="?", help="labelled source (default: bundled sample)")
    ds.add_argument("--out", required=True)
    ds.add_argument("--seed", type=int, default=0)
    ds.add_argument("--fractions", default="0.7,0.15,0.15", help="train,val,test (default 0.7,0.15,0.15)")
    ds.add_argument("--overwrite", action="store_true")
    d.set_defaults(run=run)


def run(args) -> int:
    from ssl_derm.commands.data import inspect_command, split_command

    if args.data_command == "inspect":
        return call_with(inspect_command, args)
    if args.data_command == "split":
        return call_with(split_command, args)
    raise UserError("data: choose an action: inspect or split (see ssl-derm data --help)")
