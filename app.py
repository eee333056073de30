"""Composition root: ``create_app()`` for WSGI servers, and the command line
(``python app.py --help``)."""
from desk import create_app  # noqa: F401  (``app:create_app()`` for WSGI servers)
from desk.cli import cli

if __name__ == "__main__":
    cli()
