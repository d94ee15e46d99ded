"""The ``pqtwin`` command line: one module (``pqtwin.cli``) that calls sim and hw through public functions."""
