"""gunicorn config: gevent workers (2 by default, WEB_CONCURRENCY), psycogreen, multiprocess metrics.

Run: gunicorn -c gunicorn.conf.py wsgi:app   (REDIS_URL, DATABASE_URL, BIND, ... from the environment)
"""

# Patch before the app's imports: redis imports names from ssl directly, and a patch after that (the
# gevent worker's own, at fork) leaves those references unpatched and prints a MonkeyPatchWarning.
from gevent import monkey

monkey.patch_all()

from api.serving import gunicorn_settings  # noqa: E402
from inventory.config import Settings  # noqa: E402

globals().update(gunicorn_settings(Settings.from_env()))
