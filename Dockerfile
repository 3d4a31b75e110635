# A small image that runs `hub serve` against an external PostgreSQL (HUB_DATABASE_URL).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 hub
COPY --from=build /install /usr/local
COPY migrations /app/migrations
WORKDIR /app
ENV HUB_MIGRATIONS_DIR=/app/migrations \
    HUB_DEV_MODE=false \
    HUB_DATA_DIR=/tmp/hub \
    PYTHONUNBUFFERED=1
USER hub
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz').status==200 else 1)"
CMD ["hub", "serve", "--host", "0.0.0.0", "--port", "8000"]
