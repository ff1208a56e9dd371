"""`python -m posttrain ...` == `posttrain ...` (dvc.yaml uses this form)."""

import sys

from posttrain.cli import main

sys.exit(main())
