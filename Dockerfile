# flashstock: one image for the api (gunicorn), the Celery worker and beat, and the one-shot migration.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Pinned dependencies first (cached layer); requirements.txt names no index, so pip's own applies.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
RUN pip install --no-cache-dir --no-deps . \
    && useradd --system --home /app flashstock \
    && mkdir -p /tmp/flashstock-metrics && chown flashstock /tmp/flashstock-metrics
USER flashstock

ENV BIND=0.0.0.0:8000 PROMETHEUS_MULTIPROC_DIR=/tmp/flashstock-metrics
EXPOSE 8000
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
