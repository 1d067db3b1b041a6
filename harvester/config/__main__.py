"""`python -m harvester.config > docs/config.md` regenerates the config reference."""

import sys

from harvester.config.reference import config_reference

sys.stdout.write(config_reference())
