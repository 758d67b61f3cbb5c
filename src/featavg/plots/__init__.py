"""Figures (matplotlib, headless Agg backend)."""

import matplotlib

matplotlib.use("Agg")
