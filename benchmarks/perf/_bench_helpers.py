"""Shared pieces of the performance benchmarks."""


class SilentBar:
    """A progress bar that draws nothing, so benchmarks time the loop and not the terminal."""

    def __init__(self, total=None, desc=None):
        self.n = 0

    def update(self, n=1):
        self.n += n

    def set_postfix(self, postfix, refresh=True):
        pass

    def close(self):
        pass
