"""``python -m explorer.cli COMMAND ...`` (also under ``torchrun``): the same as the ``explorer`` script."""
import sys

from explorer.cli import main

sys.exit(main())
