"""Settings for the whole test suite."""

import os

# The app draws charts without Altair's validation (explainer/vega.py); under test every chart a page draws is
# validated, in AppTest (this process) and in the browser tests' servers (child processes inherit it).
os.environ["EXPLAINER_VALIDATE_CHARTS"] = "1"
