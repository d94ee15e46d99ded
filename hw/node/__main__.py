"""``python -m hw.node RUN_DIR NAME ROLE`` — what the backends start for each pod."""

import sys
from pathlib import Path

from hw.node import main

if len(sys.argv) != 4:
    sys.stderr.write("usage: python -m hw.node RUN_DIR NAME ROLE\n")
    sys.exit(2)
sys.exit(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))
