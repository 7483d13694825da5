# The gateway image: the same package, console script and settings that `make run` uses.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    KEFU_VAR_DIR=/var/lib/kefu

WORKDIR /app
COPY pyproject.toml README.md ./
COPY common ./common
COPY knowledge ./knowledge
COPY connectors ./connectors
COPY gateway ./gateway
RUN pip install --no-cache-dir . \
    && useradd --system --home-dir /var/lib/kefu --create-home kefu
USER kefu
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health').status==200 else 1)"
CMD ["kefu", "serve", "--host", "0.0.0.0", "--port", "8000"]
