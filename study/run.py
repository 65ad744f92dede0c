"""Entry point: ``python study/run.py [--preset NAME] [--trial KEY=VALUE,...] ...``.

See ``python study/run.py --help`` and README.md. All logic lives in study/cli.py.
"""

import sys

from study.cli import main

if __name__ == "__main__":
    sys.exit(main())
