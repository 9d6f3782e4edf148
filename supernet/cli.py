"""``nas-supernet``: train, list and query weight-sharing supernets.

Subcommands:

- ``train --space S --data D --epochs N --train-subset N --proxy-resolution R --seed S``:
  train the supernet of these settings (or resume it after an interruption) and
  print its id and folder; a supernet already trained is only reported.
- ``info [ID]``: cached supernets with their provenance (all, or one as JSON).
- ``eval ID --arch ARCH``: one architecture's estimated accuracy (ARCH: a
  reference name such as ``mobilenetv3_large`` or an architecture string).

Bad input (unknown space, a supernet id that does not exist, a corrupt
checkpoint) ends with one line on stderr and exit 2, and writes nothing.

Example::

    $ nas-supernet train --space mobilenetv3 --epochs 20 --train-subset 10000 --seed 0
    $ nas-supernet eval mobilenetv3-fashion-mnist-r32-spos-e20-s0-... --arch mobilenetv3_large
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from hwnas.common.cli import Parser, non_negative_int, positive_int, run_cli, seed, widen
from hwnas.space.cli import resolve_arch
from hwnas.space.searchspace import SPACE_NAMES

from .api import DEFAULT_CALIB_IMAGES, DEFAULT_EVAL_IMAGES, load_supernet
from .store import list_supernets, supernet_folder, supernet_id, train_supernet
from .train import DEFAULT_EPOCHS, DEFAULT_TRAIN_SUBSET, DEFAULT_VAL_SIZE, RECIPES, SupernetConfig


def make_parser() -> argparse.ArgumentParser:
    """The ``nas-supernet`` argument parser (exposed for docs and tests)."""
    p = Parser(prog="nas-supernet", description="Train, list and query weight-sharing supernets.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    tr = sub.add_parser("train", help="train (or resume) a supernet and print its id and folder",
                        description="Train the supernet of a search space on the proxy task, "
                                    "checkpointing every epoch; rerun the same command to resume.")
    tr.add_argument("--space", default="mobilenetv3", metavar="NAME",
                    help=f"search space: {', '.join(SPACE_NAMES)} (default mobilenetv3)")
    tr.add_argument("--data", default="fashion-mnist", metavar="SPEC",
                    help="fashion-mnist, a folder of IDX files or an ImageFolder (default fashion-mnist)")
    tr.add_argument("--epochs", type=positive_int("epoch count"), default=DEFAULT_EPOCHS, metavar="N",
                    help=f"training epochs (default {DEFAULT_EPOCHS})")
    tr.add_argument("--train-subset", type=positive_int("training image count"),
                    default=DEFAULT_TRAIN_SUBSET, metavar="N",
                    help=f"training images (default {DEFAULT_TRAIN_SUBSET})")
    tr.add_argument("--val-size", type=positive_int("held-out image count"), default=DEFAULT_VAL_SIZE,
                    metavar="N", help=f"held-out images scored by eval (default {DEFAULT_VAL_SIZE})")
    tr.add_argument("--proxy-resolution", type=positive_int("resolution"), default=32, metavar="R",
                    help="image side in pixels (default 32)")
    tr.add_argument("--seed", type=seed, default=0, metavar="S",
                    help="seed of the data split, initial weights and path sampling (default 0)")
    tr.add_argument("--recipe", default="spos", metavar="NAME",
                    help=f"training recipe: {', '.join(RECIPES)} (default spos; docs/supernet.md)")
    tr.add_argument("--device", default=None, metavar="DEV",
                    help="torch device (default: cuda when present, with AMP; else cpu)")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")

    info = sub.add_parser("info", help="list cached supernets with their provenance",
                          description="List the supernets under $HWNAS_HOME/supernets, or print one's "
                                      "provenance as JSON.")
    info.add_argument("id", nargs="?", default=None, metavar="ID", help="one supernet's id")

    ev = sub.add_parser("eval", help="print one architecture's estimated accuracy",
                        description="Score one architecture with the supernet's inherited weights "
                                    "after BN recalibration, on its held-out images.")
    ev.add_argument("id", metavar="ID", help="supernet id (see nas-supernet info)")
    ev.add_argument("--arch", required=True, metavar="ARCH",
                    help="a reference name (mobilenetv3_large) or an architecture string (quote it)")
    ev.add_argument("--calib-images", type=positive_int("image count"), default=DEFAULT_CALIB_IMAGES,
                    metavar="N", help=f"BN recalibration images (default {DEFAULT_CALIB_IMAGES})")
    ev.add_argument("--eval-images", type=positive_int("image count"), default=DEFAULT_EVAL_IMAGES,
                    metavar="N", help=f"held-out images scored (default {DEFAULT_EVAL_IMAGES})")
    ev.add_argument("--finetune", type=non_negative_int("step count"), default=0, metavar="STEPS",
                    help="fine-tune the inherited weights this many steps of the proxy recipe "
                         "before scoring (default 0: score them as inherited)")
    ev.add_argument("--device", default=None, metavar="DEV", help="torch device (default as train)")
    return p


def _cmd_train(args: argparse.Namespace, console: Console) -> None:
    config = SupernetConfig(space=args.space, data=args.data, proxy_resolution=args.proxy_resolution,
                            recipe=args.recipe, seed=args.seed, epochs=args.epochs,
                            train_subset=args.train_subset, val_size=args.val_size)
    folder = train_supernet(config, device=args.device, progress=not args.no_progress)
    print(supernet_id(config))
    print(folder)


def _cmd_info(args: argparse.Namespace, console: Console) -> None:
    if args.id is not None:
        found = [p for p in list_supernets() if p.get("id") == args.id]
        if not found:
            supernet_folder(args.id)  # raises the one-line "no supernet ..." error
        sys.stdout.write(json.dumps(found[0], indent=2) + "\n")
        return
    rows = list_supernets()
    if not rows:
        console.print("no supernets yet: train one with nas-supernet train", highlight=False)
        return
    table = Table(title="supernets ($HWNAS_HOME/supernets)", title_justify="left")
    for col in ("id", "status", "epochs", "images", "train s", "device", "finished"):
        table.add_column(col)
    for p in rows:
        s = p.get("settings", {})
        table.add_row(p.get("id", "?"), str(p.get("status")),
                      f"{p.get('epochs_done', 0)}/{s.get('epochs', '?')}",
                      str(p.get("data", {}).get("train_images", "?")),
                      f"{p.get('train_seconds', 0):.0f}", str(p.get("machine", {}).get("device", "?")),
                      str(p.get("finished", "")))
    widen(console, table)
    console.print(table)


def _cmd_eval(args: argparse.Namespace, console: Console) -> None:
    sn = load_supernet(args.id, device=args.device, calib_images=args.calib_images,
                       eval_images=args.eval_images, finetune_steps=args.finetune)
    arch = resolve_arch(args.arch)
    if not sn.fits(arch):
        sn.extract(arch)  # raises the one-line reason
    acc = sn.estimate(arch)
    print(f"{acc:.4f}")


_COMMANDS = {"train": _cmd_train, "info": _cmd_info, "eval": _cmd_eval}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nas-supernet``; returns the exit code (0; 2 for bad input)."""
    return run_cli("nas-supernet", make_parser(), lambda a: _COMMANDS[a.command](a, Console()), argv)


if __name__ == "__main__":
    sys.exit(main())
