"""Command line: ``python -m landscape {list,check,train,runs,stamp,workflow}``.

Every expected failure (bad configuration or arguments, unknown name, missing or unreadable data,
an artefacts folder that cannot be written) ends with one line on stderr, ``error: ...``, and exit
status 2; nothing is written before the inputs are validated.
"""
from __future__ import annotations

import argparse
import json
import sys

from .config import ConfigError, list_studies, load_study
from .store import CorruptArtefact


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (argparse prints the usage block first)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m landscape", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the studies")
    for name, help_ in (("check", "validate a study under a profile"),
                        ("runs", "print the study's runs as JSON lines"),
                        ("train", "train (or load) the study's runs")):
        q = sub.add_parser(name, help=help_)
        q.add_argument("--study", required=True)
        q.add_argument("--profile", default="quick")
        if name == "train":
            q.add_argument("--config", help="only this configuration")
            q.add_argument("--seed", type=int, help="only this seed")
            q.add_argument("--data-root", help="dataset folder (default $LANDSCAPE_DATA or ./data)")
            q.add_argument("--no-progress", action="store_true")
            q.add_argument("--stamp", help="after training, write this JSON file listing the runs (the "
                                           "workflow's output of one configuration's training job)")
    st = sub.add_parser("stamp", help="copy an artefact's provenance into an executed notebook's metadata")
    st.add_argument("notebook", help="the executed notebook (.ipynb), rewritten atomically")
    st.add_argument("artefact", help="the JSON artefact it wrote (its 'provenance' field)")
    wf = sub.add_parser("workflow", help="run Snakemake (args after --), recovering the stale lock "
                                         "of an interrupted run and refusing while another runs")
    wf.add_argument("snakemake_args", nargs=argparse.REMAINDER, help="-- then Snakemake's arguments")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "workflow":  # torch-free; on success the process becomes Snakemake
        from .launch import run_workflow

        rest = args.snakemake_args
        return run_workflow(rest[1:] if rest[:1] == ["--"] else rest)
    try:
        if args.cmd == "stamp":  # torch-free: runs after every notebook the workflow executes
            from .stamp import stamp_from_artefact

            prov = stamp_from_artefact(args.notebook, args.artefact)
            print(f"{args.notebook}: provenance of {len(prov.get('keys', []))} runs")
            return 0
        if args.cmd == "list":
            print("\n".join(list_studies()))
            return 0
        study = load_study(args.study, args.profile)
        if args.cmd == "check":
            print(f"{study.name} ({args.profile}): {len(study.configs)} configurations, {len(study.runs)} runs: ok")
            return 0
        if args.cmd == "runs":
            for r in study.runs:
                print(json.dumps({"config": r.config, "seed": r.seed, "key": r.key, "dir": str(r.dir)}))
            return 0
        runs = study.runs if args.config is None else study.runs_of(args.config)
        if args.seed is not None:
            runs = [r for r in runs if r.seed == args.seed]
            if not runs:
                raise ConfigError(f"seed = {args.seed} is not among this study's seeds under profile {args.profile!r}")
        from .train import train_run

        done = []
        for r in runs:
            t = train_run(r, data_root=args.data_root, progress=False if args.no_progress else None)
            o = t.metrics["outcome"]
            last = t.metrics["history"][-1]
            status = (f"diverged at epoch {o['epoch']} step {o['step']}" if o["diverged"]
                      else f"test_acc {last['test_acc']:.4f}")
            print(f"{r.study}/{r.config}/seed{r.seed} [{r.key}]: {status}")
            done.append({"config": r.config, "seed": r.seed, "key": r.key, "diverged": o["diverged"],
                         "criterion": t.metrics.get("criterion")})
        if args.stamp:
            from .store import write_json

            write_json(args.stamp, {"study": study.name, "profile": args.profile, "runs": done})
        return 0
    except (ConfigError, CorruptArtefact, ValueError, OSError) as err:  # OSError: DataNotFound too
        text = " ".join(str(err).split()) or type(err).__name__  # always one line
        print(f"error: {text}", file=sys.stderr)
        return 2
