"""keyplan: declarative bring-your-own-key management across clouds."""

__version__ = "0.1.0"
