"""gunicorn config: gevent workers (2 by default, WEB_CONCURRENCY), psycogreen, multiprocess metrics.

Run: gunicorn -c gunicorn.conf.py wsgi:app   (REDIS_URL, DATABASE_URL, BIND, ... from the environment)
"""

from api.serving import gunicorn_settings
from inventory.config import Settings

globals().update(gunicorn_settings(Settings.from_env()))
