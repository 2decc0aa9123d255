"""``python -m charge_point_sim``."""

import sys

from charge_point_sim.cli import main

if __name__ == "__main__":
    sys.exit(main())
