"""`python -m lionfer ...` (and `torchrun -m lionfer train ...`): the lionfer command."""

import sys

from lionfer.cli import main

if __name__ == "__main__":
    sys.exit(main())
