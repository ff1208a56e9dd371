"""`python -m tasks.curate build SPLIT... | publish` (what each `dvc.yaml` stage runs)."""

import sys

from tasks.curate.pipeline import main

sys.exit(main(sys.argv[1:]))
