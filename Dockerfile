# The sandbox facets service under gunicorn (see gunicorn.conf.py); used by docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FACETS_ENV=production

WORKDIR /srv/facets
RUN useradd --system --create-home --uid 10001 facets

COPY pyproject.toml app.py gunicorn.conf.py ./
COPY facets/ facets/
COPY models/ models/
COPY migrations/ migrations/
RUN pip install . && mkdir -p instance && chown facets:facets instance

USER facets
EXPOSE 8000
CMD ["gunicorn", "--config", "gunicorn.conf.py"]
