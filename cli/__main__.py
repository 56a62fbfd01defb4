"""``python -m sgverbalise.cli`` (as torchrun's ``-m`` runs it): the ``sgv`` command line."""

import sys

from sgverbalise.cli.main import main

sys.exit(main())
