"""Train one run: ``python trainers/train.py --config configs/runs/smoke.yaml [key=value ...] [--results PATH]``.

Works the same under ``accelerate launch [--multi_gpu --num_processes N] trainers/train.py ...``.
All logic lives in :mod:`scaling.train` (see docs/training.md).
"""

import sys

from scaling.train.cli import main

if __name__ == "__main__":
    sys.exit(main())
