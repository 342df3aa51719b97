"""Policy (:mod:`virtkit.config.defaults`). The machine spec and its resolution live in :mod:`virtkit.spec`."""
