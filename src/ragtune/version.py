"""The package's version, in a module of its own: the web client names it in its
User-Agent, and importing the package root for it would import everything."""

__version__ = "0.1.0"
