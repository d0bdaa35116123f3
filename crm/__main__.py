"""``python -m crm ...`` is the ``flask --app wsgi ...`` command line."""

import os
import sys

from flask.cli import FlaskGroup

from crm import create_app


def main() -> None:
    os.environ.setdefault("FLASK_APP", "wsgi")
    FlaskGroup(create_app=create_app)(prog_name="python -m crm", args=sys.argv[1:])


if __name__ == "__main__":
    main()
