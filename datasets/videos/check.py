"""Check a dash-cam video folder and build its index: `python datasets/videos/check.py --root DIR [--decode]`.

The same as `python -m drivesim.data.prepare videos ...` (see README.md beside this file).
"""

from __future__ import annotations

import sys

from drivesim.data.prepare import main

if __name__ == "__main__":
    raise SystemExit(main(["videos", *sys.argv[1:]]))
