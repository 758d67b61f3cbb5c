"""The package version, in a module of its own: everything that records or checks it (run
provenance, cache identity) imports it from here, never from the package face (which
imports the API, and so everything)."""

__version__ = "0.1.0"
