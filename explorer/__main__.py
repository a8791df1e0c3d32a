"""``python -m explorer COMMAND ...``: the same as the ``explorer`` script (and ``python -m explorer.cli``)."""
import sys

from explorer.cli import main

sys.exit(main())
