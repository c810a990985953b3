"""Entry point for `celery -A workers.worker worker|beat`."""
from service.settings import load_settings
from workers.celery_app import make_celery

app = make_celery(load_settings())
