"""speak-encoder: a memory-flat, crash-safe video encoder node for the 3Speak network."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("speak-encoder")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

USER_AGENT = f"speak-encoder/{__version__}"

__all__ = ["USER_AGENT", "__version__"]
