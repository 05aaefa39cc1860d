"""Check a nuScenes-format dataset: `python datasets/nuscenes/check.py --root DIR [--version V] [--decode]`.

The same as `python -m drivesim.data.prepare nuscenes ...` (see README.md beside this file).
"""

from __future__ import annotations

import sys

from drivesim.data.prepare import main

if __name__ == "__main__":
    raise SystemExit(main(["nuscenes", *sys.argv[1:]]))
