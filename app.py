"""What ``flask --app app`` and ``gunicorn app:app`` (or ``'app:create_app()'``) load."""

from bridge import create_app

app = create_app()
