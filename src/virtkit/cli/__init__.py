"""The ``virtkit`` command line."""
