"""python -m experiments COMMAND [flags]: the vgjax tool without its console script."""

import sys

from experiments.commands import main

sys.exit(main())
