"""The command line, ``python -m rs_core``: parsers and dispatch only; the work is done by the library."""
