"""The synthesize stage: generate one embedded dataset in its real twin's on-disk format (corpora.synthetic).

python -m pcmebench.synthesize --dataset synthetic-coco --output data/synthetic-coco --generator '{"seed": 0, ...}'
"""

from __future__ import annotations

import argparse
import json
import logging

from corpora import SYNTHETIC_FORMAT
from corpora.synthetic import write_synthetic
from pcmebench.logs import log_to_stderr

log = logging.getLogger("pcmebench.synthesize")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, choices=SYNTHETIC_FORMAT)
    parser.add_argument("--output", required=True)
    parser.add_argument("--generator", type=json.loads, required=True, help="the generator's settings (JSON)")
    args = parser.parse_args(argv)
    log_to_stderr()
    log.info("generating %s with %s", args.dataset, args.generator)
    write_synthetic(args.dataset, args.output, **args.generator)
    log.info("done")


if __name__ == "__main__":
    main()
