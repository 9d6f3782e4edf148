"""hwnas.search: rewards, proxy training, controllers, execution and results."""

from .results import Run, load_run

__all__ = ["Run", "load_run"]
