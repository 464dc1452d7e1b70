"""Deliberately empty gunicorn config, so ./gunicorn.conf.py (the real API's) is not picked up for bench apps."""
