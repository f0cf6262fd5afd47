# One image for every role: `docker run IMAGE serve | worker | migrate`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DISPATCHER_HOST=0.0.0.0 \
    DISPATCHER_PORT=8080 \
    DISPATCHER_VAR_DIR=/var/lib/dispatcher \
    DISPATCHER_LOG_JSON=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY dispatcher ./dispatcher
COPY alembic ./alembic
COPY alembic.ini ./
COPY templates ./templates
RUN pip install . && useradd --system --home /var/lib/dispatcher --create-home dispatcher

USER dispatcher
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=3)" || exit 1
ENTRYPOINT ["dispatcher"]
CMD ["serve"]
