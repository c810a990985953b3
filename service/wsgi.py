"""gunicorn entry point: `gunicorn 'service.wsgi:create_app()'`."""
from service.app import create_app

__all__ = ["create_app"]
